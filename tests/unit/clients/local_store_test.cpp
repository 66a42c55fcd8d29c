#include "clients/sdk/local_store.h"

#include <signal/curve.h>
#include <signal/ratchet.h>
#include <signal/session_pre_key.h>
#include <signal/session_record.h>
#include <signal/signal_protocol.h>
#include <sqlcipher/sqlite3.h>
#include <sys/stat.h>

#include <fstream>
#include <iterator>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "clients/sdk/crypto_provider.h"
#include "clients/sdk/identity.h"
#include "clients/sdk/signal_handles.h"
#include "gtest/gtest.h"
#include "tests/harness/harness.h"

namespace padlock::client {
namespace {

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

// A marker that would appear verbatim in an unencrypted SQLite file.
constexpr char kMarker[] = "PADLOCK-PLAINTEXT-MARKER-4711";

class LocalStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    absl::StatusOr<std::unique_ptr<SignalContext>> context = SignalContext::Create();
    ASSERT_TRUE(context.ok()) << context.status();
    context_ = *std::move(context);
    path_ = dir_.path() + "/device.db";
  }

  std::unique_ptr<LocalStore> OpenStore(const std::string& passphrase = "") {
    absl::StatusOr<std::unique_ptr<LocalStore>> store = LocalStore::Open(path_, passphrase);
    EXPECT_TRUE(store.ok()) << store.status();
    return store.ok() ? *std::move(store) : nullptr;
  }

  // Stores kMarker as a remote identity key, so that it lands in the file.
  void WriteMarker(LocalStore& store) {
    ASSERT_TRUE(store.AcceptRemoteIdentity({"bob", 1}, kMarker).ok());
  }

  padlock::testing::TempDir dir_;
  std::string path_;
  std::unique_ptr<SignalContext> context_;
};

TEST_F(LocalStoreTest, CreatesFileWithMode0600AndCurrentSchema) {
  std::unique_ptr<LocalStore> store = OpenStore();
  ASSERT_NE(store, nullptr);
  struct stat st {};
  ASSERT_EQ(::stat(path_.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  absl::StatusOr<int> version = store->SchemaVersion();
  ASSERT_TRUE(version.ok()) << version.status();
  EXPECT_EQ(*version, kLocalStoreSchemaVersion);
  // The write-ahead log, present while the database is open after a write, has the same mode.
  WriteMarker(*store);
  ASSERT_EQ(::stat((path_ + "-wal").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
}

TEST_F(LocalStoreTest, SchemaHasEveryTable) {
  ASSERT_NE(OpenStore(), nullptr);
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open_v2(path_.c_str(), &db, SQLITE_OPEN_READONLY, nullptr), SQLITE_OK);
  std::string tables;
  sqlite3_exec(
      db, "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' "
          "ORDER BY name",
      [](void* out, int, char** values, char**) {
        *static_cast<std::string*>(out) += std::string(values[0]) + " ";
        return 0;
      },
      &tables, nullptr);
  sqlite3_close(db);
  EXPECT_EQ(tables,
            "account groups local_identity messages outbox prekeys received remote_identities "
            "sender_key_shared sender_keys sessions signed_prekey_ages signed_prekeys stories "
            "verified_device_lists ");
}

TEST_F(LocalStoreTest, NewerSchemaIsRefused) {
  ASSERT_NE(OpenStore(), nullptr);
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open_v2(path_.c_str(), &db, SQLITE_OPEN_READWRITE, nullptr), SQLITE_OK);
  ASSERT_EQ(sqlite3_exec(db, "PRAGMA user_version = 99", nullptr, nullptr, nullptr), SQLITE_OK);
  sqlite3_close(db);
  EXPECT_EQ(LocalStore::Open(path_, "").status().code(), absl::StatusCode::kFailedPrecondition);
}

TEST_F(LocalStoreTest, LocalIdentityRoundTripsAndIsStoredOnce) {
  std::unique_ptr<LocalStore> store = OpenStore();
  ASSERT_NE(store, nullptr);
  EXPECT_EQ(store->LoadLocalIdentity().status().code(), absl::StatusCode::kNotFound);
  absl::StatusOr<IdentityKeyPair> identity = GenerateIdentityKeyPair(*context_);
  ASSERT_TRUE(identity.ok());
  ASSERT_TRUE(store->SaveLocalIdentity(*identity, 1234).ok());
  EXPECT_EQ(store->SaveLocalIdentity(*identity, 99).code(), absl::StatusCode::kAlreadyExists);
  store.reset();
  store = OpenStore();
  ASSERT_NE(store, nullptr);
  absl::StatusOr<IdentityKeyPair> loaded = store->LoadLocalIdentity();
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  EXPECT_EQ(loaded->public_key, identity->public_key);
  EXPECT_EQ(loaded->private_key, identity->private_key);
  EXPECT_EQ(*store->LoadRegistrationId(), 1234u);
}

TEST_F(LocalStoreTest, PlainFileContainsMarker) {
  // The control for the encrypted case below: without a passphrase the marker is visible.
  std::unique_ptr<LocalStore> store = OpenStore();
  ASSERT_NE(store, nullptr);
  WriteMarker(*store);
  store.reset();
  EXPECT_NE(ReadFile(path_).find(kMarker), std::string::npos);
}

TEST_F(LocalStoreTest, EncryptedFileHidesMarkerAndReopensWithPassphrase) {
  std::unique_ptr<LocalStore> store = OpenStore("correct horse");
  ASSERT_NE(store, nullptr);
  WriteMarker(*store);
  store.reset();
  const std::string bytes = ReadFile(path_);
  EXPECT_GT(bytes.size(), 0u);
  EXPECT_EQ(bytes.find(kMarker), std::string::npos);
  EXPECT_EQ(bytes.find("SQLite format 3"), std::string::npos);
  store = OpenStore("correct horse");
  ASSERT_NE(store, nullptr);
  absl::StatusOr<std::optional<std::string>> key = store->LoadRemoteIdentity({"bob", 1});
  ASSERT_TRUE(key.ok()) << key.status();
  EXPECT_EQ(key->value_or(""), kMarker);
}

TEST_F(LocalStoreTest, WrongPassphraseFailsToOpen) {
  ASSERT_NE(OpenStore("correct horse"), nullptr);
  EXPECT_EQ(LocalStore::Open(path_, "wrong horse").status().code(),
            absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(LocalStore::Open(path_, "").status().code(), absl::StatusCode::kPermissionDenied);
}

TEST_F(LocalStoreTest, PassphraseWithQuoteWorks) {
  ASSERT_NE(OpenStore("it's"), nullptr);
  EXPECT_NE(OpenStore("it's"), nullptr);
  EXPECT_EQ(LocalStore::Open(path_, "its").status().code(), absl::StatusCode::kPermissionDenied);
}

// The callbacks as libsignal calls them, with their differing return conventions.
class StoreCallbacksTest : public LocalStoreTest {
 protected:
  void SetUp() override {
    LocalStoreTest::SetUp();
    store_ = OpenStore();
    ASSERT_NE(store_, nullptr);
    absl::StatusOr<StoreContextPtr> store_context = store_->CreateStoreContext(*context_);
    ASSERT_TRUE(store_context.ok()) << store_context.status();
    store_context_ = *std::move(store_context);
  }
  void TearDown() override {
    store_context_.reset();
    store_.reset();
  }

  std::unique_ptr<LocalStore> store_;
  StoreContextPtr store_context_;
};

const uint8_t* U8(const char* s) { return reinterpret_cast<const uint8_t*>(s); }

TEST_F(StoreCallbacksTest, SessionsStoreLoadListAndDelete) {
  const signal_protocol_address address{"bob", 3, 2};
  EXPECT_EQ(signal_protocol_session_contains_session(store_context_.get(), &address), 0);
  session_record* raw = nullptr;
  ASSERT_EQ(session_record_create(&raw, nullptr, context_->get()), 0);
  SignalPtr<session_record> record(raw);
  ASSERT_EQ(signal_protocol_session_store_session(store_context_.get(), &address, record.get()),
            0);
  EXPECT_EQ(signal_protocol_session_contains_session(store_context_.get(), &address), 1);
  EXPECT_TRUE(*store_->ContainsSession({"bob", 2}));
  raw = nullptr;
  // load_session returned 1: the stored record comes back.
  ASSERT_EQ(signal_protocol_session_load_session(store_context_.get(), &raw, &address), 0);
  SignalPtr<session_record> loaded(raw);
  EXPECT_NE(loaded, nullptr);
  signal_int_list* devices = nullptr;
  ASSERT_EQ(signal_protocol_session_get_sub_device_sessions(store_context_.get(), &devices, "bob",
                                                            3),
            1);
  ASSERT_EQ(signal_int_list_size(devices), 1u);
  EXPECT_EQ(signal_int_list_at(devices, 0), 2);
  signal_int_list_free(devices);
  EXPECT_EQ(signal_protocol_session_delete_session(store_context_.get(), &address), 1);
  EXPECT_EQ(signal_protocol_session_contains_session(store_context_.get(), &address), 0);
}

TEST_F(StoreCallbacksTest, PreKeyLoadReturnsInvalidKeyIdWhenMissing) {
  absl::StatusOr<std::vector<PreKey>> keys = GeneratePreKeys(*context_, 10, 2);
  ASSERT_TRUE(keys.ok());
  ASSERT_TRUE(store_->StorePreKey((*keys)[0].id, (*keys)[0].record).ok());
  session_pre_key* raw = nullptr;
  EXPECT_EQ(signal_protocol_pre_key_load_key(store_context_.get(), &raw, 10), SG_SUCCESS);
  SignalPtr<session_pre_key> loaded(raw);
  ASSERT_NE(loaded, nullptr);
  raw = nullptr;
  EXPECT_EQ(signal_protocol_pre_key_load_key(store_context_.get(), &raw, 11),
            SG_ERR_INVALID_KEY_ID);
  EXPECT_EQ(raw, nullptr);
  EXPECT_EQ(signal_protocol_pre_key_contains_key(store_context_.get(), 10), 1);
  EXPECT_EQ(signal_protocol_pre_key_remove_key(store_context_.get(), 10), 0);
  EXPECT_EQ(signal_protocol_pre_key_contains_key(store_context_.get(), 10), 0);
  EXPECT_EQ(*store_->CountPreKeys(), 0);
}

TEST_F(StoreCallbacksTest, SignedPreKeyLoadReturnsInvalidKeyIdWhenMissing) {
  session_signed_pre_key* raw = nullptr;
  EXPECT_EQ(signal_protocol_signed_pre_key_load_key(store_context_.get(), &raw, 5),
            SG_ERR_INVALID_KEY_ID);
  EXPECT_EQ(raw, nullptr);
}

TEST_F(StoreCallbacksTest, LocalIdentityAndRegistrationIdReachLibsignal) {
  absl::StatusOr<IdentityKeyPair> identity = GenerateIdentityKeyPair(*context_);
  ASSERT_TRUE(identity.ok());
  ASSERT_TRUE(store_->SaveLocalIdentity(*identity, 4242).ok());
  uint32_t registration_id = 0;
  ASSERT_EQ(signal_protocol_identity_get_local_registration_id(store_context_.get(),
                                                               &registration_id),
            0);
  EXPECT_EQ(registration_id, 4242u);
  ratchet_identity_key_pair* raw = nullptr;
  ASSERT_EQ(signal_protocol_identity_get_key_pair(store_context_.get(), &raw), 0);
  SignalPtr<ratchet_identity_key_pair> pair(raw);
  signal_buffer* serialized = nullptr;
  ASSERT_EQ(ec_public_key_serialize(&serialized, ratchet_identity_key_pair_get_public(pair.get())),
            0);
  BufferPtr buffer(serialized);
  EXPECT_EQ(ToString(buffer.get()), identity->public_key);
}

TEST_F(StoreCallbacksTest, IdentityTrustOnFirstUseAndNullKeyRemoves) {
  absl::StatusOr<IdentityKeyPair> first = GenerateIdentityKeyPair(*context_);
  absl::StatusOr<IdentityKeyPair> second = GenerateIdentityKeyPair(*context_);
  ASSERT_TRUE(first.ok() && second.ok());
  auto decode = [&](const std::string& key) {
    ec_public_key* raw = nullptr;
    EXPECT_EQ(curve_decode_point(&raw, U8(key.data()), key.size(), context_->get()), 0);
    return SignalPtr<ec_public_key>(raw);
  };
  SignalPtr<ec_public_key> first_key = decode(first->public_key);
  SignalPtr<ec_public_key> second_key = decode(second->public_key);
  const signal_protocol_address address{"carol", 5, 1};
  // Unknown: trusted on first use.
  EXPECT_EQ(signal_protocol_identity_is_trusted_identity(store_context_.get(), &address,
                                                          first_key.get()),
            1);
  ASSERT_EQ(signal_protocol_identity_save_identity(store_context_.get(), &address,
                                                   first_key.get()),
            0);
  EXPECT_EQ(signal_protocol_identity_is_trusted_identity(store_context_.get(), &address,
                                                          first_key.get()),
            1);
  EXPECT_EQ(signal_protocol_identity_is_trusted_identity(store_context_.get(), &address,
                                                          second_key.get()),
            0);
  // NULL means remove.
  ASSERT_EQ(signal_protocol_identity_save_identity(store_context_.get(), &address, nullptr), 0);
  EXPECT_FALSE(store_->LoadRemoteIdentity({"carol", 1})->has_value());
}

}  // namespace
}  // namespace padlock::client
