#pragma once
// The InboxStore contract: one parameterised suite run on InMemoryInboxStore (unit test, no
// servers) and on RedisInboxStore (integration test, a real redis-server and a 3-master cluster),
// so that the fake the Dispatcher tests rely on stays honest. Include in exactly one .cpp per
// test binary and instantiate with INSTANTIATE_TEST_SUITE_P(Name, InboxStoreContract, values).
//
// Only rules that both stores must share are asserted: nothing about wall-clock time (the fake
// runs on a manual clock), no expiry (retention is an hour here), no key layout.

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "padlock/v1/common.pb.h"
#include "services/message_queue/inbox_store.h"
#include "services/message_queue/redis_inbox_store.h"

namespace padlock::message_queue {

// Makes a fresh, empty store with the given limits. The store must stay usable until the next
// call (or the end of the test).
struct InboxStoreFactory {
  std::string name;
  std::function<std::unique_ptr<InboxStore>(const InboxLimits&)> make;
};

class InboxStoreContract : public ::testing::TestWithParam<InboxStoreFactory> {
 protected:
  static InboxLimits Limits() {
    InboxLimits limits;
    limits.retention = absl::Hours(1);
    limits.max_entries = 10;
    limits.max_bytes = 1 << 20;
    limits.dedupe_window = absl::Seconds(60);
    return limits;
  }
  void SetUp() override { store_ = GetParam().make(Limits()); }
  void Remake(const InboxLimits& limits) {
    store_.reset();
    store_ = GetParam().make(limits);
  }

  static std::string Envelope(const std::string& ciphertext, const std::string& header = "") {
    padlock::v1::Envelope e;
    e.set_message_id(std::string(16, 'i'));
    e.mutable_sender()->set_user_id("alice");
    e.mutable_sender()->set_device_id(1);
    e.set_type(padlock::v1::ENVELOPE_TYPE_MESSAGE);
    if (!ciphertext.empty()) e.set_ciphertext(ciphertext);
    if (!header.empty()) e.set_recipient_header(header);
    return e.SerializeAsString();
  }
  static AppendRequest Request(const DeviceKey& device, const std::string& key,
                               const std::string& ciphertext) {
    AppendRequest r;
    r.device = device;
    r.envelope = Envelope(ciphertext);
    r.dedupe_key = key;
    r.expires_at_ms = 0;  // no per-entry TTL
    return r;
  }
  // Appends one request per key to `device`; expects every one to succeed.
  std::vector<AppendResult> AppendAll(const DeviceKey& device, int n, const std::string& prefix) {
    std::vector<AppendRequest> requests;
    for (int i = 0; i < n; ++i) {
      requests.push_back(Request(device, absl::StrCat(prefix, i), absl::StrCat("ct-", prefix, i)));
    }
    std::vector<AppendResult> out;
    for (auto& result : store_->Append(requests)) {
      EXPECT_TRUE(result.ok()) << result.status();
      out.push_back(result.ok() ? *result : AppendResult());
    }
    return out;
  }
  InboxPage ReadAll(const DeviceKey& device, const std::string& after = "") {
    absl::StatusOr<InboxPage> page = store_->Read(device, after, 1000);
    EXPECT_TRUE(page.ok()) << page.status();
    return page.ok() ? *std::move(page) : InboxPage();
  }
  static std::vector<uint64_t> Sequences(const InboxPage& page) {
    std::vector<uint64_t> out;
    for (const StoredEntry& e : page.entries) out.push_back(e.sequence);
    return out;
  }
  uint64_t AckOne(const AckRequest& ack) {
    std::vector<absl::StatusOr<uint64_t>> removed = store_->Ack({ack});
    EXPECT_EQ(removed.size(), 1u);
    EXPECT_TRUE(removed[0].ok()) << removed[0].status();
    return removed[0].ok() ? *removed[0] : 9999;
  }

  const DeviceKey bob1_{"bob", 1};
  const DeviceKey bob2_{"bob", 2};
  std::unique_ptr<InboxStore> store_;
};

TEST_P(InboxStoreContract, AppendsGetSequencesInOrderPerDeviceAndIncreasingIds) {
  std::vector<AppendRequest> requests = {Request(bob1_, "k0", "a"), Request(bob2_, "k0", "b"),
                                         Request(bob1_, "k1", "c"), Request(bob1_, "k2", "d")};
  std::vector<absl::StatusOr<AppendResult>> results = store_->Append(requests);
  ASSERT_EQ(results.size(), 4u);
  for (const auto& r : results) ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(results[0]->sequence, 1u);
  EXPECT_EQ(results[1]->sequence, 1u);  // bob:2 has its own sequence
  EXPECT_EQ(results[2]->sequence, 2u);
  EXPECT_EQ(results[3]->sequence, 3u);
  EXPECT_FALSE(results[0]->duplicate);
  InboxPage page = ReadAll(bob1_);
  EXPECT_THAT(Sequences(page), ::testing::ElementsAre(1u, 2u, 3u));
  ASSERT_EQ(page.entries.size(), 3u);
  EXPECT_EQ(page.entries[0].server_id, results[0]->server_id);
  EXPECT_EQ(page.entries[2].server_id, results[3]->server_id);
  EXPECT_LT(page.entries[0].server_id, page.entries[1].server_id);  // same length here
  EXPECT_EQ(page.entries[1].envelope, requests[2].envelope);       // byte for byte
  EXPECT_EQ(page.last_sequence, 3u);
  EXPECT_EQ(page.acked_sequence, 0u);
  EXPECT_EQ(page.depth, 3u);
  EXPECT_TRUE(page.acked_individually.empty());
}

TEST_P(InboxStoreContract, SameDedupeKeyReturnsFirstIdsAndStoresNothing) {
  std::vector<AppendResult> first = AppendAll(bob1_, 1, "same");
  std::vector<AppendResult> again = AppendAll(bob1_, 1, "same");
  ASSERT_EQ(again.size(), 1u);
  EXPECT_TRUE(again[0].duplicate);
  EXPECT_EQ(again[0].sequence, first[0].sequence);
  EXPECT_EQ(again[0].server_id, first[0].server_id);
  absl::StatusOr<InboxInfo> info = store_->Info(bob1_);
  ASSERT_TRUE(info.ok());
  EXPECT_EQ(info->depth, 1u);
  EXPECT_EQ(info->last_sequence, 1u);
}

TEST_P(InboxStoreContract, EntryCapRefusesWithResourceExhaustedAndStoresNothing) {
  AppendAll(bob1_, 10, "fill");
  std::vector<absl::StatusOr<AppendResult>> over = store_->Append({Request(bob1_, "over", "x")});
  ASSERT_EQ(over.size(), 1u);
  EXPECT_EQ(over[0].status().code(), absl::StatusCode::kResourceExhausted);
  absl::StatusOr<InboxInfo> info = store_->Info(bob1_);
  ASSERT_TRUE(info.ok());
  EXPECT_EQ(info->depth, 10u);
  EXPECT_EQ(info->last_sequence, 10u);  // no sequence burnt
}

TEST_P(InboxStoreContract, ByteCapCountsEnvelopeBytesAndAcksFreeThem) {
  InboxLimits limits = Limits();
  const std::string big = Envelope(std::string(600, 'b'));
  limits.max_bytes = big.size() + 100;
  Remake(limits);
  std::vector<AppendRequest> one = {Request(bob1_, "b1", std::string(600, 'b'))};
  std::vector<absl::StatusOr<AppendResult>> first = store_->Append(one);
  ASSERT_TRUE(first[0].ok());
  EXPECT_EQ(store_->Info(bob1_)->bytes, big.size());
  std::vector<absl::StatusOr<AppendResult>> second =
      store_->Append({Request(bob1_, "b2", std::string(600, 'b'))});
  EXPECT_EQ(second[0].status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(AckOne(AckRequest{bob1_, "", {first[0]->server_id}}), 1u);
  EXPECT_EQ(store_->Info(bob1_)->bytes, 0u);
  EXPECT_TRUE(store_->Append({Request(bob1_, "b2", std::string(600, 'b'))})[0].ok());
}

TEST_P(InboxStoreContract, ReadIsExclusiveOfTheCursorAndBoundedByMaxEntries) {
  std::vector<AppendResult> r = AppendAll(bob1_, 5, "r");
  absl::StatusOr<InboxPage> page = store_->Read(bob1_, r[1].server_id, 2);
  ASSERT_TRUE(page.ok());
  EXPECT_THAT(Sequences(*page), ::testing::ElementsAre(3u, 4u));
  EXPECT_EQ(page->last_sequence, 5u);
  EXPECT_EQ(page->depth, 5u);
  EXPECT_TRUE(ReadAll(bob1_, r[4].server_id).entries.empty());
  EXPECT_TRUE(ReadAll(DeviceKey{"nobody", 9}).entries.empty());
  EXPECT_EQ(ReadAll(DeviceKey{"nobody", 9}).last_sequence, 0u);
}

TEST_P(InboxStoreContract, CumulativeAckRemovesThroughTheIdRaisesTheFloorAndIsIdempotent) {
  std::vector<AppendResult> r = AppendAll(bob1_, 4, "c");
  EXPECT_EQ(AckOne(AckRequest{bob1_, r[2].server_id, {}}), 3u);
  EXPECT_EQ(AckOne(AckRequest{bob1_, r[2].server_id, {}}), 0u);
  InboxPage page = ReadAll(bob1_);
  EXPECT_THAT(Sequences(page), ::testing::ElementsAre(4u));
  EXPECT_EQ(page.acked_sequence, 3u);
  EXPECT_EQ(page.depth, 1u);
}

TEST_P(InboxStoreContract, AckAndAppendAppliesTheAcksThenTheAppends) {
  std::vector<AppendResult> r = AppendAll(bob1_, 3, "aa");
  const std::vector<AckRequest> acks = {AckRequest{bob1_, r[1].server_id, {}},
                                        AckRequest{bob1_, "", {r[2].server_id}}};
  const std::vector<AppendRequest> appends = {Request(bob1_, "aa-new", "ct-new"),
                                              Request(bob2_, "aa-b2", "ct-b2")};
  InboxStore::AckAndAppendResults results = store_->AckAndAppend(acks, appends);
  ASSERT_EQ(results.acks.size(), 2u);
  ASSERT_TRUE(results.acks[0].ok()) << results.acks[0].status();
  EXPECT_EQ(*results.acks[0], 2u);
  ASSERT_TRUE(results.acks[1].ok()) << results.acks[1].status();
  EXPECT_EQ(*results.acks[1], 1u);
  ASSERT_EQ(results.appends.size(), 2u);
  ASSERT_TRUE(results.appends[0].ok()) << results.appends[0].status();
  EXPECT_EQ(results.appends[0]->sequence, 4u);
  ASSERT_TRUE(results.appends[1].ok()) << results.appends[1].status();
  EXPECT_EQ(results.appends[1]->sequence, 1u);
  InboxPage page = ReadAll(bob1_);
  EXPECT_THAT(Sequences(page), ::testing::ElementsAre(4u));
  EXPECT_EQ(page.acked_sequence, 3u);
  EXPECT_THAT(Sequences(ReadAll(bob2_)), ::testing::ElementsAre(1u));
  // Acks alone, and appends alone, through the same call.
  EXPECT_EQ(*store_->AckAndAppend({AckRequest{bob1_, results.appends[0]->server_id, {}}}, {})
                 .acks.at(0),
            1u);
  EXPECT_TRUE(store_->AckAndAppend({}, {Request(bob2_, "aa-b2-2", "x")}).appends.at(0).ok());
}

TEST_P(InboxStoreContract, IndividualAcksAreRememberedUntilTheFloorPassesThem) {
  std::vector<AppendResult> r = AppendAll(bob1_, 5, "i");
  EXPECT_EQ(AckOne(AckRequest{bob1_, "", {r[3].server_id, r[1].server_id, r[4].server_id}}), 3u);
  EXPECT_EQ(AckOne(AckRequest{bob1_, "", {r[3].server_id}}), 0u);  // idempotent
  InboxPage page = ReadAll(bob1_);
  EXPECT_THAT(Sequences(page), ::testing::ElementsAre(1u, 3u));
  EXPECT_EQ(page.acked_sequence, 0u);
  EXPECT_THAT(page.acked_individually, ::testing::ElementsAre(2u, 4u, 5u));
  // Acking 1 moves the floor over 2.
  EXPECT_EQ(AckOne(AckRequest{bob1_, r[0].server_id, {}}), 1u);
  page = ReadAll(bob1_);
  EXPECT_EQ(page.acked_sequence, 2u);
  EXPECT_THAT(page.acked_individually, ::testing::ElementsAre(4u, 5u));
  // Acking 3 (by id) closes the hole: the floor reaches 5 and nothing is remembered.
  EXPECT_EQ(AckOne(AckRequest{bob1_, "", {r[2].server_id}}), 1u);
  page = ReadAll(bob1_);
  EXPECT_EQ(page.acked_sequence, 5u);
  EXPECT_TRUE(page.acked_individually.empty());
  EXPECT_TRUE(page.entries.empty());
}

TEST_P(InboxStoreContract, CumulativeAckDropsTheIndividualAcksItCovers) {
  std::vector<AppendResult> r = AppendAll(bob1_, 6, "d");
  // 2 and 5 one by one; then everything through 3 cumulatively: floor 3, 5 still remembered.
  EXPECT_EQ(AckOne(AckRequest{bob1_, "", {r[1].server_id, r[4].server_id}}), 2u);
  EXPECT_EQ(AckOne(AckRequest{bob1_, r[2].server_id, {}}), 2u);
  InboxPage page = ReadAll(bob1_);
  EXPECT_EQ(page.acked_sequence, 3u);
  EXPECT_THAT(page.acked_individually, ::testing::ElementsAre(5u));
  EXPECT_THAT(Sequences(page), ::testing::ElementsAre(4u, 6u));
}

TEST_P(InboxStoreContract, OnlineOnlyStoresNothingAndHasNoSequence) {
  AppendRequest r = Request(bob1_, "typing", "typing");
  r.online_only = true;
  std::vector<absl::StatusOr<AppendResult>> results = store_->Append({r});
  ASSERT_TRUE(results[0].ok()) << results[0].status();
  EXPECT_EQ(results[0]->sequence, 0u);
  EXPECT_EQ(results[0]->server_id, "");
  EXPECT_EQ(store_->Info(bob1_)->depth, 0u);
  EXPECT_EQ(store_->Info(bob1_)->last_sequence, 0u);
}

TEST_P(InboxStoreContract, SharedPayloadIsServedAsTheCiphertextOfEveryEntry) {
  auto shared = std::make_shared<const SharedPayload>(
      SharedPayload{"alice:1:0a0b", "group-ciphertext", 4'000'000'000'000});
  std::vector<AppendRequest> requests;
  for (const DeviceKey& d : {bob1_, bob2_}) {
    AppendRequest r;
    r.device = d;
    r.envelope = Envelope("", absl::StrCat("header-", d.device_id));
    r.dedupe_key = "alice:1:group";
    r.shared = shared;
    requests.push_back(std::move(r));
  }
  for (const auto& result : store_->Append(requests)) ASSERT_TRUE(result.ok()) << result.status();
  for (const DeviceKey& d : {bob1_, bob2_}) {
    InboxPage page = ReadAll(d);
    ASSERT_EQ(page.entries.size(), 1u);
    padlock::v1::Envelope e;
    ASSERT_TRUE(e.ParseFromString(page.entries[0].envelope));
    EXPECT_EQ(e.ciphertext(), "group-ciphertext");
    EXPECT_EQ(e.recipient_header(), absl::StrCat("header-", d.device_id));
  }
}

TEST_P(InboxStoreContract, PurgeRemovesTheInboxAndCountsEntries) {
  AppendAll(bob1_, 3, "p");
  AppendAll(bob2_, 1, "p");
  absl::StatusOr<uint64_t> removed = store_->Purge(bob1_);
  ASSERT_TRUE(removed.ok());
  EXPECT_EQ(*removed, 3u);
  EXPECT_EQ(store_->Info(bob1_)->depth, 0u);
  EXPECT_EQ(store_->Info(bob1_)->bytes, 0u);
  EXPECT_EQ(*store_->Purge(bob1_), 0u);
  EXPECT_EQ(store_->Info(bob2_)->depth, 1u);
}

}  // namespace padlock::message_queue
