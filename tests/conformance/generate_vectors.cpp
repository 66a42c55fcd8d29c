// padlock-vectors DIR: writes DIR/statements.json, DIR/content.json and DIR/x3dh.json
// (docs/PROTOCOL.md "Test vectors"); x3dh.json is the same on every run (seeded random source).
// Run it to regenerate docs/vectors/ after a deliberate format change (a new label or format
// version); contract_unit_test checks the checked-in files against the code.
//
// padlock-vectors check DIR: the conformance check (tests/conformance/README.md) — reads
// DIR/statements.json, DIR/content.json and DIR/x3dh.json written by any implementation and
// checks them against this code (x3dh.json: its first message is decrypted as Bob); prints each
// failure; exit status 0 when everything conforms, 1 otherwise.

#include <fstream>
#include <iostream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "clients/sdk/crypto_provider.h"
#include "tests/conformance/vectors.h"

int main(int argc, char** argv) {
  if (argc == 3 && std::string(argv[1]) == "check") {
    const std::string dir = argv[2];
    int failures = 0;
    for (const char* name : {"statements.json", "content.json", "x3dh.json"}) {
      std::ifstream in(dir + "/" + name);
      std::stringstream text;
      text << in.rdbuf();
      auto parsed = padlock::vectors::FromJson(text.str());
      if (!parsed.ok()) {
        std::cout << "FAIL " << name << ": " << parsed.status() << std::endl;
        ++failures;
        continue;
      }
      const std::string file = name;
      const std::vector<std::string> found =
          file == "statements.json" ? padlock::vectors::CheckStatementVectors(*parsed)
          : file == "content.json"  ? padlock::vectors::CheckContentVectors(*parsed)
                                    : padlock::vectors::CheckX3dhVectors(*parsed);
      for (const std::string& f : found) std::cout << "FAIL " << name << ": " << f << std::endl;
      failures += static_cast<int>(found.size());
      if (found.empty()) std::cout << "ok   " << name << std::endl;
    }
    return failures == 0 ? 0 : 1;
  }
  if (argc != 2) {
    std::cerr << "usage: padlock-vectors DIR | padlock-vectors check DIR" << std::endl;
    return 2;
  }
  const std::string dir = argv[1];
  auto context = padlock::client::SignalContext::Create();
  if (!context.ok()) {
    std::cerr << context.status() << std::endl;
    return 1;
  }
  auto statements = padlock::vectors::MakeStatementVectors(**context);
  auto content = padlock::vectors::MakeContentVectors(**context);
  auto x3dh = padlock::vectors::MakeX3dhVectors();
  for (const absl::Status& status : {statements.status(), content.status(), x3dh.status()}) {
    if (!status.ok()) {
      std::cerr << status << std::endl;
      return 1;
    }
  }
  std::ofstream(dir + "/statements.json") << padlock::vectors::ToJson(*statements);
  std::ofstream(dir + "/content.json") << padlock::vectors::ToJson(*content);
  std::ofstream(dir + "/x3dh.json") << padlock::vectors::ToJson(*x3dh);
  std::cout << "wrote statements.json, content.json and x3dh.json in " << dir << std::endl;
  return 0;
}
