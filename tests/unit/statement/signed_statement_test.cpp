#include "common/statement/signed_statement.h"

#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/escaping.h"
#include "gtest/gtest.h"

namespace padlock::statement {
namespace {

// Expected bytes were computed independently of this code (struct.pack in Python), from the
// layout documented in signed_statement.h and docs/PROTOCOL.md.
std::string Hex(const std::string& bytes) { return absl::BytesToHexString(bytes); }

std::string Key(char fill) { return std::string(1, '\x05') + std::string(32, fill); }

TEST(StatementEncoder, WritesLengthPrefixedFieldsAndBigEndianIntegers) {
  StatementEncoder encoder("ab");
  encoder.AddBytes("").AddString("xyz").AddU32(0x01020304).AddU64(0x0102030405060708ULL);
  EXPECT_EQ(Hex(encoder.bytes()),
            "000000026162"
            "00000000"
            "0000000378797a"
            "0000000401020304"
            "000000080102030405060708");
  EXPECT_EQ(Hex(std::move(encoder).Finish()).size(), 2 * (6 + 4 + 7 + 8 + 12));
}

TEST(StatementEncoder, BinaryBytesArePreservedExactly) {
  const std::string bytes("\x00\xff\x80\x00", 4);
  StatementEncoder encoder("l");
  encoder.AddBytes(bytes);
  EXPECT_EQ(Hex(encoder.bytes()), "000000016c0000000400ff8000");
}

TEST(SignedStatement, RegistrationGoldenBytes) {
  const std::string statement =
      EncodeRegistration("alice", 1, Key('\x11'), 0x1234, 7, Key('\x22'));
  EXPECT_EQ(statement.size(), 130u);
  EXPECT_EQ(Hex(statement),
            "000000137061646c6f636b2d72656769737465722d763100000005616c6963650000000400000001"
            "00000021051111111111111111111111111111111111111111111111111111111111111111000000"
            "04000012340000000400000007000000210522222222222222222222222222222222222222222222"
            "22222222222222222222");
}

TEST(SignedStatement, LoginGoldenBytes) {
  std::string challenge;
  for (int i = 0; i < 16; ++i) challenge.push_back(static_cast<char>(i));
  const std::string statement = EncodeLogin("+14155550123", 2, challenge, "gw.example.org");
  EXPECT_EQ(statement.size(), 82u);
  EXPECT_EQ(Hex(statement),
            "000000107061646c6f636b2d6c6f67696e2d76310000000c2b313431353535353031323300000004"
            "0000000200000010000102030405060708090a0b0c0d0e0f0000000e67772e6578616d706c652e6f"
            "7267");
}

TEST(SignedStatement, DeviceListGoldenBytes) {
  const std::vector<DeviceListEntry> entries = {{1, Key('\x11'), 0x1234},
                                                {2, Key('\x33'), 0xabcdef01}};
  absl::StatusOr<std::string> statement = EncodeDeviceList("alice", 3, entries);
  ASSERT_TRUE(statement.ok()) << statement.status();
  EXPECT_EQ(statement->size(), 161u);
  EXPECT_EQ(Hex(*statement),
            "000000167061646c6f636b2d6465766963652d6c6973742d763100000005616c6963650000000800"
            "00000000000003000000040000000200000004000000010000002105111111111111111111111111"
            "11111111111111111111111111111111111111110000000400001234000000040000000200000021"
            "05333333333333333333333333333333333333333333333333333333333333333300000004abcdef"
            "01");
}

TEST(SignedStatement, IdentityChangeGoldenBytes) {
  const std::string statement =
      EncodeIdentityChange("alice", 1, Key('\x11'), Key('\x44'), 999);
  EXPECT_EQ(statement.size(), 129u);
  EXPECT_EQ(Hex(statement),
            "0000001a7061646c6f636b2d6964656e746974792d6368616e67652d763100000005616c69636500"
            "00000400000001000000210511111111111111111111111111111111111111111111111111111111"
            "11111111000000210544444444444444444444444444444444444444444444444444444444444444"
            "4400000004000003e7");
}

TEST(SignedStatement, EmptyDeviceListEncodesCountZero) {
  absl::StatusOr<std::string> statement = EncodeDeviceList("bob", 1, {});
  ASSERT_TRUE(statement.ok()) << statement.status();
  EXPECT_EQ(Hex(*statement),
            "000000167061646c6f636b2d6465766963652d6c6973742d7631"
            "00000003626f62"
            "000000080000000000000001"
            "0000000400000000");
}

TEST(SignedStatement, DeviceListRejectsDescendingDeviceIds) {
  const std::vector<DeviceListEntry> entries = {{2, Key('\x11'), 1}, {1, Key('\x22'), 2}};
  EXPECT_EQ(EncodeDeviceList("alice", 1, entries).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(SignedStatement, DeviceListRejectsDuplicateDeviceIds) {
  const std::vector<DeviceListEntry> entries = {
      {1, Key('\x11'), 1}, {3, Key('\x22'), 2}, {3, Key('\x33'), 3}};
  EXPECT_EQ(EncodeDeviceList("alice", 1, entries).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(SignedStatement, DeviceListAcceptsGapsInAscendingIds) {
  const std::vector<DeviceListEntry> entries = {{1, Key('\x11'), 1}, {4, Key('\x22'), 2}};
  EXPECT_TRUE(EncodeDeviceList("alice", 1, entries).ok());
}

TEST(SignedStatement, EveryStatementStartsWithItsLengthPrefixedLabel) {
  const std::string key = Key('\x11');
  const std::vector<std::pair<std::string_view, std::string>> statements = {
      {kRegisterLabel, EncodeRegistration("alice", 1, key, 1, 1, key)},
      {kLoginLabel, EncodeLogin("alice", 1, "c", "a")},
      {kDeviceListLabel, *EncodeDeviceList("alice", 1, {{{1, key, 1}}})},
      {kIdentityChangeLabel, EncodeIdentityChange("alice", 1, key, key, 1)},
  };
  for (const auto& [label, statement] : statements) {
    StatementEncoder prefix(label);
    EXPECT_EQ(statement.substr(0, prefix.bytes().size()), prefix.bytes()) << label;
    // Never a bare key: a key is 33 bytes starting with 0x05; statements start with 00.
    EXPECT_GT(statement.size(), 33u) << label;
    EXPECT_EQ(statement[0], '\0') << label;
  }
}

TEST(SignedStatement, LabelsAreDistinct) {
  const std::vector<std::string_view> labels = {kRegisterLabel, kLoginLabel, kDeviceListLabel,
                                                kIdentityChangeLabel};
  for (size_t i = 0; i < labels.size(); ++i) {
    for (size_t j = i + 1; j < labels.size(); ++j) EXPECT_NE(labels[i], labels[j]);
  }
}

TEST(SignedStatement, FieldBoundariesCannotBeShifted) {
  EXPECT_NE(EncodeLogin("alice", 1, "xy", "z"), EncodeLogin("alice", 1, "x", "yz"));
  EXPECT_NE(EncodeLogin("alice1", 1, "", "a"), EncodeLogin("alice", 1, "1", "a"));
}

TEST(SignedStatement, EveryFieldChangesTheBytes) {
  const std::string k1 = Key('\x11');
  const std::string k2 = Key('\x22');
  const std::string base = EncodeRegistration("alice", 1, k1, 5, 6, k2);
  EXPECT_NE(base, EncodeRegistration("alicf", 1, k1, 5, 6, k2));
  EXPECT_NE(base, EncodeRegistration("alice", 2, k1, 5, 6, k2));
  EXPECT_NE(base, EncodeRegistration("alice", 1, k2, 5, 6, k2));
  EXPECT_NE(base, EncodeRegistration("alice", 1, k1, 6, 6, k2));
  EXPECT_NE(base, EncodeRegistration("alice", 1, k1, 5, 7, k2));
  EXPECT_NE(base, EncodeRegistration("alice", 1, k1, 5, 6, k1));
}

}  // namespace
}  // namespace padlock::statement
