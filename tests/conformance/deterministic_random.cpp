#include "tests/conformance/deterministic_random.h"

#include <openssl/sha.h>
#include <signal/signal_protocol.h>

#include <algorithm>

#include "absl/strings/str_cat.h"

namespace padlock::vectors {

absl::Status DeterministicRandom::Install(client::SignalContext& context) {
  signal_crypto_provider provider = client::OpenSslCryptoProvider();
  provider.random_func = &DeterministicRandom::Fill;
  provider.user_data = this;  // the other callbacks ignore user_data
  // libsignal copies the provider into the context.
  const int rc = signal_context_set_crypto_provider(context.get(), &provider);
  if (rc != SG_SUCCESS) {
    return absl::InternalError(absl::StrCat("signal_context_set_crypto_provider failed: ", rc));
  }
  return absl::OkStatus();
}

int DeterministicRandom::Fill(uint8_t* data, size_t len, void* user_data) {
  static_cast<DeterministicRandom*>(user_data)->Next(data, len);
  return SG_SUCCESS;
}

void DeterministicRandom::Next(uint8_t* data, size_t len) {
  std::string out;
  while (out.size() < len) {
    if (pending_.empty()) {
      std::string input = seed_;
      for (int shift = 56; shift >= 0; shift -= 8) {
        input.push_back(static_cast<char>((block_index_ >> shift) & 0xff));
      }
      ++block_index_;
      unsigned char digest[SHA256_DIGEST_LENGTH];
      SHA256(reinterpret_cast<const unsigned char*>(input.data()), input.size(), digest);
      pending_.assign(reinterpret_cast<const char*>(digest), sizeof(digest));
    }
    const size_t take = std::min(pending_.size(), len - out.size());
    out.append(pending_, 0, take);
    pending_.erase(0, take);
  }
  std::copy(out.begin(), out.end(), data);
  draws_.push_back(std::move(out));
}

}  // namespace padlock::vectors
