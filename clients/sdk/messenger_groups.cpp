// Messenger: groups with Sender Keys (messenger.h). Membership travels in group-update messages
// (1:1, encrypted); each device's sender key travels 1:1 to every member device that lacks it;
// a group text is encrypted once and sent as one shared payload that the server fans out, with
// the group id as each recipient's header.
#include <openssl/rand.h>

#include <algorithm>
#include <set>
#include <utility>

#include "absl/strings/str_cat.h"
#include "clients/sdk/device_list.h"
#include "clients/sdk/messenger.h"

namespace padlock::client {
namespace {

constexpr size_t kGroupIdSize = 16;

absl::StatusOr<std::string> RandomId() {
  std::string out(kGroupIdSize, '\0');
  if (RAND_bytes(reinterpret_cast<unsigned char*>(out.data()), static_cast<int>(out.size())) != 1) {
    return absl::InternalError("RAND_bytes failed");
  }
  return out;
}

bool IsMember(const GroupRecord& group, const std::string& user) {
  return std::find(group.members.begin(), group.members.end(), user) != group.members.end();
}

}  // namespace

absl::Status Messenger::SendGroupUpdate(const GroupRecord& group,
                                        const std::vector<std::string>& users) {
  const std::string body = EncodeGroupUpdate({group.group_id, group.title, group.members});
  for (const std::string& user : users) {
    if (user == core_.account->user_id) {
      // This account's other devices (if any) keep the same groups.
      absl::StatusOr<padlock::v1::SignedDeviceList> own = CachedDeviceList(user);
      if (!own.ok()) return own.status();
      if (own->list().devices_size() < 2) continue;
    }
    absl::StatusOr<std::string> id = Compose(user, ContentKind::kGroupUpdate, body, false, "");
    if (!id.ok()) return id.status();
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> Messenger::CreateGroup(const std::string& title,
                                                   const std::vector<std::string>& members) {
  if (!core_.account.has_value()) return core_.RequireAccount();
  absl::StatusOr<std::string> group_id = RandomId();
  if (!group_id.ok()) return group_id.status();
  GroupRecord group{*group_id, title, {core_.account->user_id}, 0};
  for (const std::string& m : members) {
    if (!IsMember(group, m)) group.members.push_back(m);
  }
  std::sort(group.members.begin(), group.members.end());
  absl::Status status = core_.store->InTransaction([&]() -> absl::Status {
    if (absl::Status s = core_.store->SaveGroup(group); !s.ok()) return s;
    return SendGroupUpdate(group, group.members);
  });
  if (!status.ok()) return status;
  (void)FlushOutbox();
  return *group_id;
}

absl::Status Messenger::AddGroupMember(const std::string& group_id, const std::string& user) {
  absl::StatusOr<std::optional<GroupRecord>> group = core_.store->LoadGroup(group_id);
  if (!group.ok()) return group.status();
  if (!group->has_value()) return absl::NotFoundError("no such group");
  GroupRecord g = **group;
  if (IsMember(g, user)) return absl::OkStatus();
  g.members.push_back(user);
  std::sort(g.members.begin(), g.members.end());
  absl::Status status = core_.store->InTransaction([&]() -> absl::Status {
    if (absl::Status s = core_.store->SaveGroup(g); !s.ok()) return s;
    return SendGroupUpdate(g, g.members);
  });
  if (status.ok()) (void)FlushOutbox();
  return status;
}

absl::Status Messenger::RemoveGroupMember(const std::string& group_id, const std::string& user) {
  absl::StatusOr<std::optional<GroupRecord>> group = core_.store->LoadGroup(group_id);
  if (!group.ok()) return group.status();
  if (!group->has_value()) return absl::NotFoundError("no such group");
  GroupRecord g = **group;
  if (!IsMember(g, user)) return absl::OkStatus();
  std::vector<std::string> told = g.members;  // the removed member learns it too
  g.members.erase(std::find(g.members.begin(), g.members.end(), user));
  // The removed member holds this device's current sender key: start a new one, which only the
  // remaining members will get.
  ++g.epoch;
  absl::Status status = core_.store->InTransaction([&]() -> absl::Status {
    if (absl::Status s = core_.store->DeleteSenderKey(
            group_id, {core_.account->user_id, static_cast<int32_t>(core_.account->device_id)});
        !s.ok()) {
      return s;
    }
    if (user == core_.account->user_id) return core_.store->DeleteGroup(group_id);
    if (absl::Status s = core_.store->SaveGroup(g); !s.ok()) return s;
    return SendGroupUpdate(g, told);
  });
  if (status.ok()) (void)FlushOutbox();
  return status;
}

absl::StatusOr<std::string> Messenger::ComposeGroupText(const std::string& group_id,
                                                        const std::string& text) {
  if (!core_.account.has_value()) return core_.RequireAccount();
  absl::StatusOr<std::optional<GroupRecord>> loaded = core_.store->LoadGroup(group_id);
  if (!loaded.ok()) return loaded.status();
  if (!loaded->has_value()) return absl::NotFoundError("no such group");
  const GroupRecord group = **loaded;
  absl::StatusOr<std::string> message_id = RandomId();
  if (!message_id.ok()) return message_id.status();
  const RemoteAddress self{core_.account->user_id, static_cast<int32_t>(core_.account->device_id)};
  padlock::v1::OutgoingMessage message;
  message.set_message_id(*message_id);
  absl::Status status = core_.store->InTransaction([&]() -> absl::Status {
    for (const std::string& user : group.members) {
      absl::StatusOr<padlock::v1::SignedDeviceList> list = CachedDeviceList(user);
      if (!list.ok()) return list.status();
      bool lacking = false;
      for (const padlock::v1::DeviceListEntry& d : list->list().devices()) {
        const RemoteAddress device{user, static_cast<int32_t>(d.device_id())};
        if (device == self) continue;
        padlock::v1::Recipient* r = message.add_recipients();
        r->mutable_device()->set_user_id(user);
        r->mutable_device()->set_device_id(d.device_id());
        r->set_registration_id(d.registration_id());
        r->set_header(group_id);
        absl::StatusOr<bool> shared = core_.store->SenderKeyShared(group_id, device, group.epoch);
        if (!shared.ok()) return shared.status();
        lacking = lacking || !*shared;
      }
      if (!lacking) continue;
      // Queued before the group message, so every member device has the key when it arrives
      // (one sender device's envelopes reach each inbox in order).
      absl::StatusOr<Ciphertext> distribution = core_.crypto->GroupDistribution(group_id);
      if (!distribution.ok()) return distribution.status();
      absl::StatusOr<std::string> sent = Compose(
          user, ContentKind::kGroupKeyDistribution, group_id + distribution->bytes, false, "");
      if (!sent.ok()) return sent.status();
      for (const padlock::v1::DeviceListEntry& d : list->list().devices()) {
        if (absl::Status s = core_.store->MarkSenderKeyShared(
                group_id, {user, static_cast<int32_t>(d.device_id())}, group.epoch);
            !s.ok()) {
          return s;
        }
      }
    }
    if (message.recipients().empty()) {
      return absl::FailedPreconditionError("the group has no other member device");
    }
    absl::StatusOr<Ciphertext> ciphertext =
        core_.crypto->GroupEncrypt(group_id, Content{ContentKind::kText, EncodeTextBody("", text)});
    if (!ciphertext.ok()) return ciphertext.status();
    message.set_shared_ciphertext(ciphertext->bytes);
    message.set_shared_type(ciphertext->type);
    const int64_t now = absl::ToUnixMillis(ClockNow());
    const std::string conversation = GroupConversation(group_id);
    if (absl::Status s = core_.store->AddOutbox({*message_id, conversation,
                                            static_cast<uint8_t>(ContentKind::kText), text,
                                            message.SerializeAsString(), now});
        !s.ok()) {
      return s;
    }
    return core_.store->AddMessage(
        {*message_id, conversation, core_.account->user_id, core_.account->device_id,
         static_cast<uint8_t>(ContentKind::kText), text, now, now, true, MessageStatus::kPending});
  });
  if (!status.ok()) return status;
  return *message_id;
}

absl::StatusOr<std::string> Messenger::SendGroupText(const std::string& group_id,
                                                     const std::string& text,
                                                     absl::Duration timeout) {
  absl::StatusOr<std::string> id = ComposeGroupText(group_id, text);
  if (!id.ok()) return id.status();
  return AwaitSent(*id, timeout);
}

absl::Status Messenger::FixGroupMismatch(const OutboxEntry& entry,
                                         padlock::v1::OutgoingMessage& message,
                                         const padlock::v1::Mismatch& mismatch) {
  std::string group_id;
  for (const padlock::v1::Recipient& r : message.recipients()) {
    if (!r.header().empty()) group_id = r.header();
  }
  return core_.store->InTransaction([&]() -> absl::Status {
    for (const padlock::v1::DeviceMismatch& user : mismatch.users()) {
      absl::StatusOr<padlock::v1::SignedDeviceList> list = RefreshDeviceList(user.user_id());
      if (!list.ok()) return list.status();
      // Re-address this user's devices from the verified list; the shared ciphertext stays.
      auto* recipients = message.mutable_recipients();
      for (int i = recipients->size() - 1; i >= 0; --i) {
        if (recipients->Get(i).device().user_id() == user.user_id()) {
          recipients->DeleteSubrange(i, 1);
        }
      }
      for (const padlock::v1::DeviceListEntry& d : list->list().devices()) {
        if (user.user_id() == core_.account->user_id && d.device_id() == core_.account->device_id)
          continue;
        padlock::v1::Recipient* r = message.add_recipients();
        r->mutable_device()->set_user_id(user.user_id());
        r->mutable_device()->set_device_id(d.device_id());
        r->set_registration_id(d.registration_id());
        r->set_header(group_id);
      }
      for (uint32_t d : user.stale_device_ids()) {
        if (absl::Status s = core_.store->DeleteSession({user.user_id(), static_cast<int32_t>(d)});
            !s.ok()) {
          return s;
        }
      }
      // New and reinstalled devices need this device's sender key before the message.
      absl::StatusOr<Ciphertext> distribution = core_.crypto->GroupDistribution(group_id);
      if (!distribution.ok()) return distribution.status();
      absl::StatusOr<std::string> sent = Compose(user.user_id(), ContentKind::kGroupKeyDistribution,
                                                 group_id + distribution->bytes, false, "");
      if (!sent.ok()) return sent.status();
    }
    // Move the entry behind the distributions just queued (same message id, same ciphertext).
    if (absl::Status s = core_.store->RemoveOutbox(entry.message_id); !s.ok()) return s;
    OutboxEntry moved = entry;
    moved.payload = message.SerializeAsString();
    return core_.store->AddOutbox(moved);
  });
}

absl::Status Messenger::ApplyGroupUpdate(const RemoteAddress& sender, std::string_view body,
                                         MessengerEvent& event) {
  absl::StatusOr<GroupUpdate> update = DecodeGroupUpdate(body);
  if (!update.ok()) return update.status();
  absl::StatusOr<std::optional<GroupRecord>> known = core_.store->LoadGroup(update->group_id);
  if (!known.ok()) return known.status();
  event.kind = MessengerEvent::Kind::kGroupUpdated;
  event.conversation = GroupConversation(update->group_id);
  event.text = update->title;
  // Only a member may change a group; a new group must list its creator.
  const bool sender_may = known->has_value()
                              ? IsMember(**known, sender.user_id)
                              : std::find(update->members.begin(), update->members.end(),
                                          sender.user_id) != update->members.end();
  if (!sender_may) {
    event.kind = MessengerEvent::Kind::kRejected;
    event.detail = "group update from a non-member";
    return absl::OkStatus();
  }
  const bool me_in = std::find(update->members.begin(), update->members.end(),
                               core_.account->user_id) != update->members.end();
  const RemoteAddress self{core_.account->user_id, static_cast<int32_t>(core_.account->device_id)};
  if (!me_in) {
    event.detail = absl::StrCat(sender.user_id, " removed you from ", update->title);
    if (absl::Status s = core_.store->DeleteSenderKey(update->group_id, self); !s.ok()) return s;
    return core_.store->DeleteGroup(update->group_id);
  }
  GroupRecord group{update->group_id, update->title, update->members, 0};
  if (known->has_value()) {
    group.epoch = (*known)->epoch;
    // Someone left: they hold this device's current sender key, so rotate it.
    bool removed = false;
    for (const std::string& m : (*known)->members) {
      if (std::find(update->members.begin(), update->members.end(), m) == update->members.end()) {
        removed = true;
      }
    }
    if (removed) {
      ++group.epoch;
      if (absl::Status s = core_.store->DeleteSenderKey(update->group_id, self); !s.ok()) return s;
    }
  }
  std::string names;
  for (const std::string& m : group.members) names += (names.empty() ? "" : ", ") + m;
  event.detail = absl::StrCat(update->title, ": ", names);
  return core_.store->SaveGroup(group);
}

absl::Status Messenger::ApplyGroupKey(const RemoteAddress& sender, std::string_view body) {
  if (body.size() <= kGroupIdSize) return absl::DataLossError("sender key message too short");
  const std::string group_id(body.substr(0, kGroupIdSize));
  absl::StatusOr<std::optional<GroupRecord>> group = core_.store->LoadGroup(group_id);
  if (!group.ok()) return group.status();
  if (!group->has_value() || !IsMember(**group, sender.user_id)) {
    return absl::FailedPreconditionError("sender key for a group the sender is not in");
  }
  return core_.crypto->ProcessGroupDistribution(
      group_id, sender,
      Ciphertext{padlock::v1::ENVELOPE_TYPE_SENDER_KEY_DISTRIBUTION,
                 std::string(body.substr(kGroupIdSize))});
}

absl::Status Messenger::DecryptGroupMessage(const padlock::v1::Envelope& envelope,
                                            MessengerEvent& event) {
  const std::string& group_id = envelope.recipient_header();
  const RemoteAddress sender{envelope.sender().user_id(),
                             static_cast<int32_t>(envelope.sender().device_id())};
  absl::StatusOr<std::optional<GroupRecord>> group = core_.store->LoadGroup(group_id);
  if (!group.ok()) return group.status();
  if (!group->has_value() || !IsMember(**group, sender.user_id)) {
    return absl::FailedPreconditionError("group message for a group this device is not in");
  }
  absl::StatusOr<Content> content = core_.crypto->GroupDecrypt(
      group_id, sender, Ciphertext{envelope.type(), envelope.ciphertext()});
  if (!content.ok()) return content.status();
  const std::vector<uint8_t> readable = MessengerCapabilities().kinds;
  if (content->format_version != kContentFormatVersion ||
      std::find(readable.begin(), readable.end(), static_cast<uint8_t>(content->kind)) ==
          readable.end()) {
    // A newer client's group content: reported and answered "unsupported" (HandleDeliver).
    absl::StatusOr<bool> fresh = core_.store->MarkReceived(sender, envelope.message_id());
    if (!fresh.ok()) return fresh.status();
    event.kind = MessengerEvent::Kind::kUnsupportedContent;
    event.detail = absl::StrCat("group content kind ", static_cast<int>(content->kind),
                                " in format ", static_cast<int>(content->format_version),
                                " is not supported by this app");
    return absl::OkStatus();
  }
  if (content->kind != ContentKind::kText) return absl::DataLossError("unexpected group content");
  absl::StatusOr<std::pair<std::string, std::string>> text = DecodeTextBody(content->body);
  if (!text.ok()) return text.status();
  absl::StatusOr<bool> fresh = core_.store->MarkReceived(sender, envelope.message_id());
  if (!fresh.ok()) return fresh.status();
  const bool own = sender.user_id == core_.account->user_id;
  event.kind = MessengerEvent::Kind::kMessage;
  event.outgoing = own;
  event.conversation = GroupConversation(group_id);
  event.text = text->second;
  event.detail = (*group)->title;
  return core_.store->AddMessage({envelope.message_id(), event.conversation, sender.user_id,
                             static_cast<uint32_t>(sender.device_id),
                             static_cast<uint8_t>(ContentKind::kText), text->second,
                             static_cast<int64_t>(envelope.server_timestamp_ms()),
                             absl::ToUnixMillis(ClockNow()), own,
                             own ? MessageStatus::kSent : MessageStatus::kDelivered});
}

}  // namespace padlock::client
