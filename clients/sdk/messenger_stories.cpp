// Messenger: stories (docs/CLIENT.md "Stories"). A story goes to a chosen list of users with a
// time-to-live (24 h by default) that the server enforces (OutgoingMessage.ttl_seconds: an
// undelivered copy is dropped after it) and that every receiving device enforces again when it
// shows stories. It is encrypted 1:1 for every device of every listed user (and this account's
// other devices) in one send — the same durable outbox, the same mismatch handling as a text —
// rather than with a Sender Key: the audience changes from story to story, and a sender key per
// audience would need its own distribution each time. Stories are kept apart from chat history.
#include <openssl/rand.h>

#include <algorithm>
#include <set>
#include <utility>

#include "absl/strings/str_cat.h"
#include "clients/sdk/messenger.h"

namespace padlock::client {
namespace {

// The outbox entry's and the event's conversation: not a valid user id, so that it never names
// (or is held as) a 1:1 conversation.
constexpr std::string_view kStoryConversation = "story:";

}  // namespace

absl::StatusOr<std::string> Messenger::ComposeStory(const std::vector<std::string>& audience,
                                                    const std::string& text) {
  if (!core_.account.has_value()) return core_.RequireAccount();
  std::vector<std::string> users;
  for (const std::string& u : audience) {
    if (u.empty() || u == core_.account->user_id) continue;
    if (std::find(users.begin(), users.end(), u) == users.end()) users.push_back(u);
  }
  if (users.empty()) {
    return absl::InvalidArgumentError("a story needs at least one other user to post to");
  }
  const uint32_t ttl_seconds = static_cast<uint32_t>(
      std::max<int64_t>(1, absl::ToInt64Seconds(core_.options.story_ttl)));
  // Every list is verified before anything is encrypted: an unknown user fails the whole post.
  std::vector<padlock::v1::SignedDeviceList> lists;
  for (const std::string& u : users) {
    absl::StatusOr<padlock::v1::SignedDeviceList> list = CachedDeviceList(u);
    if (!list.ok()) return list.status();
    lists.push_back(*std::move(list));
  }
  absl::StatusOr<padlock::v1::SignedDeviceList> own_list = CachedDeviceList(core_.account->user_id);
  if (!own_list.ok()) return own_list.status();
  std::string message_id(16, '\0');
  if (RAND_bytes(reinterpret_cast<unsigned char*>(message_id.data()), 16) != 1) {
    return absl::InternalError("RAND_bytes failed");
  }
  const std::string body = EncodeStoryBody(ttl_seconds, text);
  const Content content{ContentKind::kStory, body};
  padlock::v1::OutgoingMessage message;
  message.set_message_id(message_id);
  message.set_ttl_seconds(ttl_seconds);
  const int64_t now = absl::ToUnixMillis(ClockNow());
  // As for a text: sessions, ratchet steps, the outbox entry and the own copy commit together.
  absl::Status status = core_.store->InTransaction([&]() -> absl::Status {
    for (const padlock::v1::SignedDeviceList& list : lists) {
      if (absl::Status s = AddRecipients(list, content, message); !s.ok()) return s;
    }
    if (absl::Status s = AddRecipients(*own_list, content, message); !s.ok()) return s;
    if (absl::Status s = core_.store->AddOutbox(OutboxEntry{
            message_id, std::string(kStoryConversation), static_cast<uint8_t>(ContentKind::kStory),
            body, message.SerializeAsString(), now});
        !s.ok()) {
      return s;
    }
    return core_.store->AddStory(StoryRecord{message_id, core_.account->user_id,
                                             core_.account->device_id, text, now,
                                             now + int64_t{ttl_seconds} * 1000, true, users});
  });
  if (!status.ok()) return status;
  return message_id;
}

absl::StatusOr<std::string> Messenger::PostStory(const std::vector<std::string>& audience,
                                                 const std::string& text,
                                                 absl::Duration timeout) {
  absl::StatusOr<std::string> id = ComposeStory(audience, text);
  if (!id.ok()) return id.status();
  return AwaitSent(*id, timeout);
}

absl::StatusOr<std::vector<StoryRecord>> Messenger::ListStories() {
  const int64_t now = absl::ToUnixMillis(ClockNow());
  // Expired stories are gone for good, not merely hidden.
  if (absl::StatusOr<int64_t> deleted = core_.store->DeleteExpiredStories(now); !deleted.ok()) {
    return deleted.status();
  }
  return core_.store->ListStories(now);
}

absl::Status Messenger::ApplyStory(const RemoteAddress& sender,
                                   const padlock::v1::Envelope& envelope, std::string_view body,
                                   MessengerEvent& event) {
  absl::StatusOr<std::pair<uint32_t, std::string>> story = DecodeStoryBody(body);
  if (!story.ok()) return story.status();
  const int64_t posted = static_cast<int64_t>(envelope.server_timestamp_ms());
  // The sender's ttl (end to end) and the server's expiry, whichever comes first.
  int64_t expires = posted + int64_t{story->first} * 1000;
  if (envelope.expires_at_ms() > 0) {
    expires = std::min(expires, static_cast<int64_t>(envelope.expires_at_ms()));
  }
  const bool own = sender.user_id == core_.account->user_id;
  event.kind = MessengerEvent::Kind::kStory;
  event.outgoing = own;
  event.conversation = std::string(kStoryConversation);
  event.text = story->second;
  event.expires_at_ms = expires;
  absl::Status stored = core_.store->AddStory(StoryRecord{envelope.message_id(), sender.user_id,
                                                     static_cast<uint32_t>(sender.device_id),
                                                     story->second, posted, expires, own, {}});
  // A copy already stored (the dedupe set was lost): nothing to add.
  if (absl::IsAlreadyExists(stored)) return absl::OkStatus();
  return stored;
}

}  // namespace padlock::client
