#pragma once
// A LocalStore file in the test's temp dir, opened (without a passphrase) as often as a test needs,
// and 16-byte message ids for its rows.
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "clients/sdk/local_store.h"
#include "gtest/gtest.h"
#include "tests/harness/harness.h"

namespace padlock::client {

class StoreFileTest : public ::testing::Test {
 protected:
  void SetUp() override { path_ = dir_.path() + "/device.db"; }
  std::unique_ptr<LocalStore> Open() {
    absl::StatusOr<std::unique_ptr<LocalStore>> store = LocalStore::Open(path_, "");
    EXPECT_TRUE(store.ok()) << store.status();
    return store.ok() ? *std::move(store) : nullptr;
  }
  padlock::testing::TempDir dir_;
  std::string path_;
};

inline const std::string kId1(16, '\x01');
inline const std::string kId2(16, '\x02');
inline const std::string kId3(16, '\x03');

}  // namespace padlock::client
