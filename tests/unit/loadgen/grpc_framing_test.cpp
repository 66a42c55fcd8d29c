// The gRPC message framing of the load generator's h2 transport (bench/loadgen/grpc_framing.h):
// what it writes is what a gRPC peer reads, and it reads messages back whatever the DATA frame
// boundaries: several in one frame, one split over many, the 5-byte prefix itself split.
#include "bench/loadgen/grpc_framing.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "padlock/v1/gateway.pb.h"

namespace padlock::loadgen {
namespace {

v1::ClientFrame AckFrame(const std::string& server_id) {
  v1::ClientFrame frame;
  frame.mutable_ack()->set_up_to_server_id(server_id);
  return frame;
}

// Feeds `wire` in pieces of `piece` bytes and returns the messages, parsed back.
std::vector<std::string> Deframe(const std::string& wire, size_t piece, absl::Status* status) {
  GrpcDeframer deframer(1 << 20);
  std::vector<std::string> out;
  *status = absl::OkStatus();
  for (size_t at = 0; at < wire.size() && status->ok(); at += piece) {
    *status = deframer.Feed(absl::string_view(wire).substr(at, piece),
                            [&](absl::string_view m) { out.emplace_back(m); });
  }
  if (status->ok()) {
    EXPECT_TRUE(deframer.AtMessageBoundary());
  }
  return out;
}

TEST(GrpcFraming, PrefixIsUncompressedFlagAndBigEndianLength) {
  const v1::ClientFrame frame = AckFrame(std::string(300, 'x'));
  std::string wire = "junk";  // appends after what is there
  AppendGrpcMessage(frame, wire);
  const size_t size = frame.ByteSizeLong();
  ASSERT_EQ(wire.size(), 4 + kGrpcPrefixBytes + size);
  EXPECT_EQ(wire.substr(0, 4), "junk");
  EXPECT_EQ(wire[4], '\0');
  EXPECT_EQ(static_cast<uint8_t>(wire[5]), 0);
  EXPECT_EQ(static_cast<uint8_t>(wire[6]), 0);
  EXPECT_EQ(static_cast<uint8_t>(wire[7]), size >> 8);
  EXPECT_EQ(static_cast<uint8_t>(wire[8]), size & 0xff);
  v1::ClientFrame back;
  ASSERT_TRUE(back.ParseFromString(wire.substr(4 + kGrpcPrefixBytes)));
  EXPECT_EQ(back.ack().up_to_server_id(), std::string(300, 'x'));
}

TEST(GrpcFraming, SeveralMessagesInOneDataFrameComeOutInOrder) {
  std::string wire;
  for (int i = 0; i < 5; ++i) AppendGrpcMessage(AckFrame("id-" + std::to_string(i)), wire);
  absl::Status status;
  const std::vector<std::string> messages = Deframe(wire, wire.size(), &status);
  ASSERT_TRUE(status.ok()) << status;
  ASSERT_EQ(messages.size(), 5u);
  for (int i = 0; i < 5; ++i) {
    v1::ClientFrame frame;
    ASSERT_TRUE(frame.ParseFromString(messages[i]));
    EXPECT_EQ(frame.ack().up_to_server_id(), "id-" + std::to_string(i));
  }
}

TEST(GrpcFraming, MessagesSplitAcrossDataFramesAtEveryOffsetAreReassembled) {
  std::string wire;
  AppendGrpcMessage(AckFrame(std::string(40, 'a')), wire);
  AppendGrpcMessage(v1::ClientFrame(), wire);  // an empty message: a prefix and nothing else
  AppendGrpcMessage(AckFrame(std::string(1000, 'b')), wire);
  // Piece sizes that split the prefix (1..4), bodies, and several messages per piece.
  for (size_t piece : {size_t{1}, size_t{2}, size_t{3}, size_t{4}, size_t{7}, size_t{44},
                       size_t{46}, size_t{500}}) {
    absl::Status status;
    const std::vector<std::string> messages = Deframe(wire, piece, &status);
    ASSERT_TRUE(status.ok()) << status;
    ASSERT_EQ(messages.size(), 3u) << "pieces of " << piece;
    v1::ClientFrame frame;
    ASSERT_TRUE(frame.ParseFromString(messages[0]));
    EXPECT_EQ(frame.ack().up_to_server_id(), std::string(40, 'a'));
    EXPECT_TRUE(messages[1].empty());
    ASSERT_TRUE(frame.ParseFromString(messages[2]));
    EXPECT_EQ(frame.ack().up_to_server_id(), std::string(1000, 'b'));
  }
}

TEST(GrpcFraming, PartialMessageIsNotAtABoundary) {
  std::string wire;
  AppendGrpcMessage(AckFrame("abc"), wire);
  GrpcDeframer deframer(1 << 20);
  int messages = 0;
  ASSERT_TRUE(deframer.Feed(absl::string_view(wire).substr(0, 6), [&](absl::string_view) {
    ++messages;
  }).ok());
  EXPECT_EQ(messages, 0);
  EXPECT_FALSE(deframer.AtMessageBoundary());
  ASSERT_TRUE(deframer.Feed(absl::string_view(wire).substr(6), [&](absl::string_view) {
    ++messages;
  }).ok());
  EXPECT_EQ(messages, 1);
  EXPECT_TRUE(deframer.AtMessageBoundary());
}

TEST(GrpcFraming, RefusesCompressedMessages) {
  std::string wire;
  AppendGrpcMessage(AckFrame("abc"), wire);
  wire[0] = 1;
  absl::Status status;
  Deframe(wire, wire.size(), &status);
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
}

TEST(GrpcFraming, RefusesMessagesAboveTheLimitEvenWhenTheirPrefixIsSplit) {
  const std::string wire("\0\x00\x10\x00\x01", 5);  // 1 MiB + 1, above the 1 MiB limit
  for (size_t piece : {size_t{2}, size_t{5}}) {
    absl::Status status;
    Deframe(wire, piece, &status);
    EXPECT_EQ(status.code(), absl::StatusCode::kResourceExhausted) << "pieces of " << piece;
  }
}

}  // namespace
}  // namespace padlock::loadgen
