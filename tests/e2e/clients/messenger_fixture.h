#pragma once
// The set-up every Messenger e2e test shares: device folders under the test's temp dir, talking to
// the shared stack (e2e_stack.h) through its public gateway; registering, linking, and pumping
// until events arrive (with a deadline, never a sleep).
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "clients/sdk/messenger.h"
#include "gtest/gtest.h"
#include "tests/e2e/clients/e2e_stack.h"
#include "tests/harness/harness.h"

namespace padlock::client::e2e {

// The real clock moved by `*skew` (read on every call), so that a test can jump days ahead while
// the messengers still talk to the real servers.
class SkewedClock final : public runtime::Clock {
 public:
  explicit SkewedClock(const absl::Duration* skew) : skew_(skew) {}
  absl::Time Now() const override { return absl::Now() + *skew_; }

 private:
  const absl::Duration* const skew_;
};

class MessengerFixture : public ::testing::Test {
 protected:
  using Kind = MessengerEvent::Kind;

  void SetUp() override { ASSERT_NE(SharedStack(), nullptr); }

  // Options for a messenger in folder `folder` of this test; its clock is absl::Now() + skew_.
  // Envelopes it is delivered are recorded in `seen` when given.
  MessengerOptions Options(const std::string& folder,
                           std::vector<padlock::v1::Envelope>* seen = nullptr) {
    MessengerOptions options;
    options.home = dir_.path() + "/" + folder;
    options.gateway.target = SharedStack()->gateway_target();
    options.gateway.min_backoff = absl::Milliseconds(50);
    options.clock = &clock_;
    if (seen != nullptr) {
      options.on_envelope = [seen](const padlock::v1::Envelope& e) { seen->push_back(e); };
    }
    return options;
  }

  std::unique_ptr<Messenger> Open(MessengerOptions options) {
    absl::StatusOr<std::unique_ptr<Messenger>> m = Messenger::Open(std::move(options));
    EXPECT_TRUE(m.ok()) << m.status();
    return m.ok() ? *std::move(m) : nullptr;
  }
  std::unique_ptr<Messenger> Open(const std::string& folder,
                                  std::vector<padlock::v1::Envelope>* seen = nullptr) {
    return Open(Options(folder, seen));
  }

  // Registers and connects `user` (in the folder the options name).
  std::unique_ptr<Messenger> Join(const std::string& user, MessengerOptions options) {
    std::unique_ptr<Messenger> m = Open(std::move(options));
    if (m == nullptr) return nullptr;
    absl::Status registered = m->Register(user);
    EXPECT_TRUE(registered.ok()) << registered;
    absl::Status connected = m->Connect(absl::Seconds(20));
    EXPECT_TRUE(connected.ok()) << connected << "\n" << SharedStack()->Logs();
    return m;
  }
  // Registers and connects `user` in folder `user`.
  std::unique_ptr<Messenger> Join(const std::string& user,
                                  std::vector<padlock::v1::Envelope>* seen = nullptr) {
    return Join(user, Options(user, seen));
  }

  // Links a new device (folder `folder`) to `primary`'s account; returns it connected.
  std::unique_ptr<Messenger> Link(Messenger& primary, const std::string& folder,
                                  std::vector<padlock::v1::Envelope>* seen = nullptr) {
    std::unique_ptr<Messenger> device = Open(folder, seen);
    if (device == nullptr) return nullptr;
    absl::StatusOr<std::string> code = device->CreateLinkRequest(primary.account()->user_id);
    EXPECT_TRUE(code.ok()) << code.status();
    if (!code.ok()) return nullptr;
    absl::StatusOr<uint32_t> id = primary.ApproveLink(*code);
    EXPECT_TRUE(id.ok()) << id.status();
    absl::Status linked = device->CompleteLink(absl::Seconds(20));
    EXPECT_TRUE(linked.ok()) << linked;
    absl::Status connected = device->Connect(absl::Seconds(20));
    EXPECT_TRUE(connected.ok()) << connected;
    return device;
  }

  // Pumps `m` until `n` events of `kind` arrived or `timeout` passed, and returns those (a test
  // failure names what else came when fewer arrived). Every other event is appended to `others`
  // when given.
  static std::vector<MessengerEvent> Await(Messenger& m, Kind kind, size_t n,
                                           absl::Duration timeout = absl::Seconds(20),
                                           std::vector<MessengerEvent>* others = nullptr) {
    std::vector<MessengerEvent> matched;
    std::string seen;
    const absl::Time deadline = absl::Now() + timeout;
    while (matched.size() < n && absl::Now() < deadline) {
      for (MessengerEvent& e : m.Pump(absl::Milliseconds(200))) {
        if (e.kind == kind) {
          matched.push_back(std::move(e));
          continue;
        }
        absl::StrAppend(&seen, " [kind ", static_cast<int>(e.kind), ": ", e.detail, "]");
        if (others != nullptr) others->push_back(std::move(e));
      }
    }
    if (matched.size() < n) {
      ADD_FAILURE() << "waited for " << n << " events of kind " << static_cast<int>(kind)
                    << ", got " << matched.size() << "; saw:" << seen;
    }
    return matched;
  }

  // The events of `kind` among what `m` produces within `d` (for asserting that nothing comes).
  static std::vector<MessengerEvent> EventsWithin(Messenger& m, Kind kind, absl::Duration d) {
    std::vector<MessengerEvent> matched;
    for (MessengerEvent& e : m.Pump(d)) {
      if (e.kind == kind) matched.push_back(std::move(e));
    }
    return matched;
  }

  padlock::testing::TempDir dir_;
  absl::Duration skew_ = absl::ZeroDuration();
  SkewedClock clock_{&skew_};
};

}  // namespace padlock::client::e2e
