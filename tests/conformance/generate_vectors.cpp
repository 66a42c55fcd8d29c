// padlock-vectors DIR: writes DIR/statements.json and DIR/content.json (docs/PROTOCOL.md "Test
// vectors"). Run it to regenerate docs/vectors/ after a deliberate format change (a new label or
// format version); contract_unit_test checks the checked-in files against the code.
//
// padlock-vectors check DIR: the conformance check (tests/conformance/README.md) — reads
// DIR/statements.json and DIR/content.json written by any implementation and checks them against
// this code; prints each failure; exit status 0 when everything conforms, 1 otherwise.

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
    for (const char* name : {"statements.json", "content.json"}) {
      std::ifstream in(dir + "/" + name);
      std::stringstream text;
      text << in.rdbuf();
      auto parsed = padlock::vectors::FromJson(text.str());
      if (!parsed.ok()) {
        std::cout << "FAIL " << name << ": " << parsed.status() << std::endl;
        ++failures;
        continue;
      }
      const std::vector<std::string> found =
          std::string(name) == "statements.json"
              ? padlock::vectors::CheckStatementVectors(*parsed)
              : padlock::vectors::CheckContentVectors(*parsed);
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
  if (!statements.ok() || !content.ok()) {
    std::cerr << (statements.ok() ? content.status() : statements.status()) << std::endl;
    return 1;
  }
  std::ofstream(dir + "/statements.json") << padlock::vectors::ToJson(*statements);
  std::ofstream(dir + "/content.json") << padlock::vectors::ToJson(*content);
  std::cout << "wrote " << dir << "/statements.json and " << dir << "/content.json" << std::endl;
  return 0;
}
