#include "services/common/redis/script.h"

#include <openssl/evp.h>

#include <cstdlib>
#include <utility>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"

namespace padlock::redis {
namespace {

std::string Sha1Hex(const std::string& data) {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int length = 0;
  if (EVP_Digest(data.data(), data.size(), digest, &length, EVP_sha1(), nullptr) != 1) {
    std::abort();  // SHA1 is always available in OpenSSL 3's default provider
  }
  return absl::BytesToHexString(
      absl::string_view(reinterpret_cast<const char*>(digest), length));
}

}  // namespace

Script::Script(std::string source) : source_(std::move(source)), sha1_(Sha1Hex(source_)) {}

Command Script::Call(const std::vector<std::string>& keys,
                     const std::vector<std::string>& args) const {
  Command command;
  command.argv.reserve(3 + keys.size() + args.size());
  command.argv.push_back("EVALSHA");
  command.argv.push_back(sha1_);
  command.argv.push_back(absl::StrCat(keys.size()));
  command.argv.insert(command.argv.end(), keys.begin(), keys.end());
  command.argv.insert(command.argv.end(), args.begin(), args.end());
  command.key_index = keys.empty() ? -1 : 3;
  command.script = this;
  return command;
}

}  // namespace padlock::redis
