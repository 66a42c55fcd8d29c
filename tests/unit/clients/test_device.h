#pragma once
// A simulated device for in-process tests: its own database file in a TempDir, a local identity,
// a signed prekey, one-time prekeys, and a DeviceCrypto. Bundles are built the way the key
// directory would hand them out (one one-time prekey per claim).

#include <memory>
#include <string>
#include <vector>

#include "clients/sdk/crypto_provider.h"
#include "clients/sdk/device_crypto.h"
#include "clients/sdk/identity.h"
#include "clients/sdk/local_store.h"
#include "gtest/gtest.h"
#include "padlock/v1/common.pb.h"

namespace padlock::client::testing {

class TestDevice {
 public:
  // Creates (or, with a fresh `path` absent, opens) the database at `path` and, when it holds no
  // identity yet, provisions one with `prekeys` one-time prekeys.
  TestDevice(SignalContext& context, std::string path, RemoteAddress address,
             int prekeys = 5, std::string passphrase = "")
      : context_(context), path_(std::move(path)), address_(std::move(address)),
        passphrase_(std::move(passphrase)) {
    Provision(prekeys);
  }

  // Closes and reopens the database (simulates an app restart).
  void Reopen() {
    crypto_.reset();
    store_.reset();
    Open();
    MakeCrypto();
  }

 private:
  void Provision(int prekeys) {
    Open();
    if (store_ == nullptr) return;
    if (store_->LoadLocalIdentity().ok()) {
      MakeCrypto();
      return;
    }
    absl::StatusOr<IdentityKeyPair> identity = GenerateIdentityKeyPair(context_);
    ASSERT_TRUE(identity.ok()) << identity.status();
    absl::StatusOr<uint32_t> registration_id = GenerateRegistrationId(context_);
    ASSERT_TRUE(registration_id.ok());
    ASSERT_TRUE(store_->SaveLocalIdentity(*identity, *registration_id).ok());
    absl::StatusOr<SignedPreKey> signed_pre_key =
        GenerateSignedPreKey(context_, *identity, 7, 1700000000000);
    ASSERT_TRUE(signed_pre_key.ok()) << signed_pre_key.status();
    ASSERT_TRUE(store_->StoreSignedPreKey(signed_pre_key->id, signed_pre_key->record).ok());
    signed_pre_key_ = *signed_pre_key;
    if (prekeys > 0) {
      absl::StatusOr<std::vector<PreKey>> keys = GeneratePreKeys(context_, 100, prekeys);
      ASSERT_TRUE(keys.ok()) << keys.status();
      for (const PreKey& key : *keys) ASSERT_TRUE(store_->StorePreKey(key.id, key.record).ok());
      pre_keys_ = *keys;
    }
    MakeCrypto();
  }

 public:
  // A bundle as the key directory would return it; takes the next one-time prekey, if any.
  padlock::v1::PreKeyBundle ClaimBundle() {
    padlock::v1::PreKeyBundle bundle;
    bundle.mutable_device()->set_user_id(address_.user_id);
    bundle.mutable_device()->set_device_id(static_cast<uint32_t>(address_.device_id));
    absl::StatusOr<uint32_t> registration_id = store_->LoadRegistrationId();
    EXPECT_TRUE(registration_id.ok());
    bundle.set_registration_id(registration_id.ok() ? *registration_id : 0);
    absl::StatusOr<IdentityKeyPair> identity = store_->LoadLocalIdentity();
    EXPECT_TRUE(identity.ok());
    if (identity.ok()) bundle.set_identity_key(identity->public_key);
    bundle.mutable_signed_prekey()->set_key_id(signed_pre_key_.id);
    bundle.mutable_signed_prekey()->set_public_key(signed_pre_key_.public_key);
    bundle.mutable_signed_prekey()->set_signature(signed_pre_key_.signature);
    if (next_pre_key_ < pre_keys_.size()) {
      const PreKey& key = pre_keys_[next_pre_key_++];
      bundle.mutable_one_time_prekey()->set_key_id(key.id);
      bundle.mutable_one_time_prekey()->set_public_key(key.public_key);
    }
    return bundle;
  }

  std::string IdentityKey() {
    absl::StatusOr<IdentityKeyPair> identity = store_->LoadLocalIdentity();
    return identity.ok() ? identity->public_key : std::string();
  }

  const RemoteAddress& address() const { return address_; }
  LocalStore& store() { return *store_; }
  DeviceCrypto& crypto() { return *crypto_; }
  const std::vector<PreKey>& pre_keys() const { return pre_keys_; }

 private:
  void Open() {
    absl::StatusOr<std::unique_ptr<LocalStore>> store = LocalStore::Open(path_, passphrase_);
    ASSERT_TRUE(store.ok()) << store.status();
    store_ = *std::move(store);
  }
  void MakeCrypto() {
    absl::StatusOr<std::unique_ptr<DeviceCrypto>> crypto =
        DeviceCrypto::Create(context_, *store_, address_);
    ASSERT_TRUE(crypto.ok()) << crypto.status();
    crypto_ = *std::move(crypto);
  }

  SignalContext& context_;
  std::string path_;
  RemoteAddress address_;
  std::string passphrase_;
  std::unique_ptr<LocalStore> store_;
  std::unique_ptr<DeviceCrypto> crypto_;
  SignedPreKey signed_pre_key_;
  std::vector<PreKey> pre_keys_;
  size_t next_pre_key_ = 0;
};

}  // namespace padlock::client::testing
