// Prints one wake-up as the notifier builds it, with everything an independent implementation
// needs to check it (web_push_independent_check.py): the device's private key and auth secret, the
// encrypted body, the Authorization header. One JSON object on stdout; fresh keys every run.
#include <iostream>

#include "services/common/runtime/json_string.h"
#include "services/notifier/push_policy.h"
#include "services/notifier/web_push.h"
#include "tests/unit/notifier/web_push_test_util.h"

int main() {
  using padlock::notifier::Base64UrlEncode;
  using padlock::runtime::JsonString;
  EVP_PKEY* key = EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-256");
  BIO* bio = BIO_new(BIO_s_mem());
  PEM_write_bio_PrivateKey(bio, key, nullptr, nullptr, 0, nullptr, nullptr);
  char* data = nullptr;
  const long length = BIO_get_mem_data(bio, &data);
  const std::string pem(data, static_cast<size_t>(length));
  BIO_free(bio);
  EVP_PKEY_free(key);
  auto signer = padlock::notifier::VapidSigner::FromPem(pem, "mailto:ops@example.org");
  if (!signer.ok()) return 1;
  const auto device = padlock::notifier::test_util::NewDevice();
  const std::string endpoint = "https://push.example.net/wpush/v2/abc";
  auto request = padlock::notifier::BuildWakeUp(endpoint, device.public_point, device.auth,
                                                absl::Hours(1), **signer);
  if (!request.ok()) return 1;
  std::string authorization;
  for (const auto& [name, value] : request->headers) {
    if (name == "Authorization") authorization = value;
  }
  std::cout << "{\"body\":" << JsonString(Base64UrlEncode(request->body))
            << ",\"ua_private\":" << JsonString(Base64UrlEncode(device.private_scalar))
            << ",\"auth\":" << JsonString(Base64UrlEncode(device.auth))
            << ",\"authorization\":" << JsonString(authorization)
            << ",\"audience\":" << JsonString("https://push.example.net")
            << ",\"plaintext\":" << JsonString(padlock::notifier::kWakeUpPlaintext) << "}\n";
  return 0;
}
