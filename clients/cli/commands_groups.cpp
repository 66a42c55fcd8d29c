// `padlock` subcommands for groups and stories: group (create, add, remove, send, list) and story.
#include <algorithm>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <iomanip>
#include <map>
#include <ostream>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "clients/cli/cli_context.h"
#include "clients/sdk/gateway_client.h"
#include "clients/sdk/messenger.h"
#include "services/common/runtime/json_string.h"

namespace padlock::cli::internal {

using runtime::JsonString;

namespace {

absl::StatusOr<std::string> FindGroup(Messenger& m, const std::string& name) {
  auto groups = m.store().ListGroups();
  if (!groups.ok()) return groups.status();
  std::vector<std::string> matches;
  for (const client::GroupRecord& g : *groups) {
    if (Hex(g.group_id) == name || g.title == name) matches.push_back(g.group_id);
  }
  if (matches.empty()) {
    return absl::NotFoundError(absl::StrCat("no group ", name, " on this device"));
  }
  if (matches.size() > 1) {
    return absl::InvalidArgumentError(absl::StrCat("several groups are called ", name,
                                                   ": use the id (padlock group list)"));
  }
  return matches[0];
}

}  // namespace

int CmdGroup(Context& c) {
  const std::vector<std::string>& p = c.args.positional;
  const std::string sub = p.empty() ? "" : p[0];
  auto m = OpenMessenger(c.args, false);  // leave incoming envelopes for `listen`
  if (!m.ok()) return Fail(c, m.status(), "group");
  if (sub == "list") {
    auto groups = (*m)->store().ListGroups();
    if (!groups.ok()) return Fail(c, groups.status(), "group");
    for (const client::GroupRecord& g : *groups) {
      std::string members;
      for (const std::string& u : g.members) members += (members.empty() ? "" : ", ") + u;
      if (c.args.json) {
        c.out << JsonLine().Str("group", Hex(g.group_id)).Str("title", g.title)
                     .Str("members", members).str() << "\n";
      } else {
        c.out << Hex(g.group_id) << "  " << g.title << "  (" << members << ")\n";
      }
    }
    if (groups->empty() && !c.args.json) c.out << "(no groups)\n";
    return kExitOk;
  }
  const absl::Duration timeout = FlagSeconds(c.args, "timeout", absl::Seconds(15));
  if (absl::Status s = ConnectWithUpkeep(c, **m, timeout); !s.ok()) return Fail(c, s, "group");
  if (sub == "create" && p.size() >= 3) {
    std::vector<std::string> members(p.begin() + 2, p.end());
    auto id = (*m)->CreateGroup(p[1], members);
    if (!id.ok()) return Fail(c, id.status(), "group create");
    (*m)->Pump(absl::Seconds(2));  // let the updates go out
    if (c.args.json) {
      c.out << JsonLine().Str("group", Hex(*id)).Str("title", p[1]).str() << "\n";
    } else {
      c.out << "created group " << p[1] << " (" << Hex(*id) << ")\n";
    }
    return kExitOk;
  }
  if ((sub == "add" || sub == "remove") && p.size() == 3) {
    auto id = FindGroup(**m, p[1]);
    if (!id.ok()) return Fail(c, id.status(), "group");
    absl::Status s = sub == "add" ? (*m)->AddGroupMember(*id, p[2])
                                  : (*m)->RemoveGroupMember(*id, p[2]);
    if (!s.ok()) return Fail(c, s, "group " + sub);
    (*m)->Pump(absl::Seconds(2));
    c.out << (sub == "add" ? "added " : "removed ") << p[2] << "\n";
    return kExitOk;
  }
  if (sub == "send" && p.size() >= 3) {
    auto id = FindGroup(**m, p[1]);
    if (!id.ok()) return Fail(c, id.status(), "group send");
    std::string text = p[2];
    for (size_t i = 3; i < p.size(); ++i) text += " " + p[i];
    auto sent = (*m)->SendGroupText(*id, text, timeout);
    if (!sent.ok()) return Fail(c, sent.status(), "group send");
    c.out << "sent to group " << p[1] << ": " << text << "\n";
    return kExitOk;
  }
  c.err << "usage: padlock group create TITLE USER... | send GROUP TEXT... | add GROUP USER | "
           "remove GROUP USER | list\n";
  return kExitUsage;
}

// A comma-separated list of users ("alice,bob"); empty names are dropped.
namespace {

std::vector<std::string> SplitUsers(const std::string& list) {
  std::vector<std::string> out;
  size_t start = 0;
  while (start <= list.size()) {
    size_t comma = list.find(',', start);
    if (comma == std::string::npos) comma = list.size();
    if (comma > start) out.push_back(list.substr(start, comma - start));
    start = comma + 1;
  }
  return out;
}

}  // namespace

int CmdStory(Context& c) {
  const std::vector<std::string>& p = c.args.positional;
  const std::string sub = p.empty() ? "" : p[0];
  const char* kUsage =
      "usage: padlock story post --to USER[,USER...] [--ttl S] TEXT... | story list\n";
  if (sub == "list" && p.size() == 1) {
    auto m = OpenMessenger(c.args, false);
    if (!m.ok()) return Fail(c, m.status(), "story list");
    auto stories = (*m)->ListStories();
    if (!stories.ok()) return Fail(c, stories.status(), "story list");
    for (const client::StoryRecord& st : *stories) {
      std::string audience;
      for (const std::string& u : st.audience) audience += (audience.empty() ? "" : ",") + u;
      if (c.args.json) {
        c.out << JsonLine().Str("story", Hex(st.message_id)).Str("from", st.sender_user_id)
                     .Num("device", st.sender_device_id).Bool("outgoing", st.outgoing)
                     .Str("text", st.text).Num("posted_at_ms", st.posted_at_ms)
                     .Num("expires_at_ms", st.expires_at_ms).Str("to", audience).str()
              << "\n";
      } else {
        c.out << "[" << TimeText(st.posted_at_ms) << "] "
              << (st.outgoing ? std::string("you") : st.sender_user_id)
              << (audience.empty() ? "" : " → " + audience) << ": " << st.text << "  (until "
              << TimeText(st.expires_at_ms) << ")\n";
      }
    }
    if (stories->empty() && !c.args.json) {
      c.out << "(no stories; received ones arrive with padlock listen)\n";
    }
    return kExitOk;
  }
  if (sub != "post" || p.size() < 2) {
    c.err << kUsage;
    return kExitUsage;
  }
  auto to = c.args.flags.find("to");
  const std::vector<std::string> audience =
      to == c.args.flags.end() ? std::vector<std::string>{} : SplitUsers(to->second);
  if (audience.empty()) {
    c.err << "padlock story post: say who may see it with --to USER[,USER...]\n" << kUsage;
    return kExitUsage;
  }
  std::string text = p[1];
  for (size_t i = 2; i < p.size(); ++i) text += " " + p[i];
  int64_t ttl_seconds = 86400;
  if (auto ttl = c.args.flags.find("ttl"); ttl != c.args.flags.end()) {
    if (!absl::SimpleAtoi(ttl->second, &ttl_seconds) || ttl_seconds <= 0 ||
        ttl_seconds > 86400) {
      c.err << "padlock story post: --ttl takes seconds, 1 to 86400 (the default)\n";
      return kExitUsage;
    }
  }
  // Leaves incoming envelopes for `listen`.
  auto m = OpenMessenger(c.args, false, absl::Seconds(ttl_seconds));
  if (!m.ok()) return Fail(c, m.status(), "story post");
  const absl::Duration timeout = FlagSeconds(c.args, "timeout", absl::Seconds(15));
  absl::StatusOr<std::string> queued = (*m)->ComposeStory(audience, text);
  if (!queued.ok()) return Fail(c, queued.status(), "story post");
  if (absl::Status s = ConnectWithUpkeep(c, **m, timeout); !s.ok()) {
    const int code = Fail(c, s, "story post");
    c.err << "(the story is queued on this device and goes out with the next padlock command "
             "that connects)\n";
    return code;
  }
  absl::StatusOr<std::string> id = (*m)->AwaitSent(*queued, timeout);
  if (!id.ok()) return Fail(c, id.status(), "story post");
  if (c.args.json) {
    c.out << JsonLine().Str("story", Hex(*id)).Str("to", to->second).Str("text", text).str()
          << "\n";
  } else {
    c.out << "posted a story to " << to->second << ": " << text << "\n";
  }
  return kExitOk;
}

}  // namespace padlock::cli::internal
