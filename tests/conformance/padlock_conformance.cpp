// padlock-conformance: the behaviour part of the conformance suite (tests/conformance/README.md).
// Drives a running Padlock stack through its public gateway with raw public-proto calls
// (padlock.v1.Gateway) and checks what docs/PROTOCOL.md promises a client: registration and login
// with the signed challenge, claims, the device stream (connected, queue_empty, deliveries, acks,
// redelivery, sender-side dedupe, order, mismatch, refusals, stream errors, displacement) and the
// documented error codes of bad inputs. Prints `ok   <check>` or `FAIL <check>: <what>` per check;
// exit status 0 only when every check passed.
//
//   padlock-conformance --gateway HOST:PORT [--ca-file PEM] [--timeout-seconds S]
//
// --ca-file: TLS, trusting this CA (as the padlock CLI takes it); plaintext without it. Each run
// registers two fresh users (conf-a-<random>, conf-b-<random>) and leaves them behind (so the
// deployment must use the `open` registration policy, the default); it stays within the
// production rate limits (two registrations, six logins, three claims). Payloads are opaque test bytes: the server never sees
// plaintext, so what lies inside the ciphertext (content kinds, the unsupported receipt) is not
// observable here — padlock-vectors and the SDK's contract_e2e_test cover it.

#include <grpcpp/grpcpp.h>

#include <fstream>
#include <iostream>
#include <memory>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "common/statement/signed_statement.h"
#include "tests/e2e/gateway/e2e_client.h"

namespace padlock::conformance {
namespace {

namespace pb = padlock::v1;
using e2e::Account;
using e2e::AccountOps;
using e2e::DeviceConn;

struct Flags {
  std::string gateway;
  std::string ca_file;
  int timeout_seconds = 20;
};

class Report {
 public:
  void Check(const std::string& name, bool ok, const std::string& detail = "") {
    if (ok) {
      std::cout << "ok   " << name << std::endl;
    } else {
      ++failures_;
      std::cout << "FAIL " << name << (detail.empty() ? "" : ": " + detail) << std::endl;
    }
  }
  void Note(const std::string& text) { std::cout << "note " << text << std::endl; }
  int failures() const { return failures_; }

 private:
  int failures_ = 0;
};

std::string Describe(const grpc::Status& status) {
  return absl::StrCat("code ", static_cast<int>(status.error_code()), " \"",
                      status.error_message(), "\"");
}
std::string Describe(const absl::Status& status) { return status.ToString(); }
std::string Describe(const std::optional<pb::SendResult>& result) {
  if (!result) return "no SendResult in time";
  return result->ShortDebugString();
}

bool Refused(const std::optional<pb::SendResult>& result, grpc::StatusCode code) {
  return result && result->has_refused() && result->refused().code() == static_cast<int>(code);
}

std::string RandomSuffix() {
  std::random_device device;
  std::mt19937_64 engine(device());
  return absl::StrCat(absl::Hex(engine(), absl::kZeroPad8)).substr(0, 8);
}

// A frame acknowledging `server_id` cumulatively.
pb::ClientFrame AckUpTo(const std::string& server_id) {
  pb::ClientFrame frame;
  frame.mutable_ack()->set_up_to_server_id(server_id);
  return frame;
}

std::optional<pb::Envelope> FindEnvelope(const DeviceConn& conn, const std::string& message_id) {
  for (const pb::Envelope& e : conn.Envelopes()) {
    if (e.message_id() == message_id) return e;
  }
  return std::nullopt;
}

int Run(const Flags& flags) {
  const absl::Duration timeout = absl::Seconds(flags.timeout_seconds);
  std::shared_ptr<grpc::ChannelCredentials> credentials = grpc::InsecureChannelCredentials();
  if (!flags.ca_file.empty()) {
    std::ifstream in(flags.ca_file);
    std::stringstream pem;
    pem << in.rdbuf();
    if (pem.str().empty()) {
      std::cerr << "cannot read " << flags.ca_file << std::endl;
      return 2;
    }
    grpc::SslCredentialsOptions options;
    options.pem_root_certs = pem.str();
    credentials = grpc::SslCredentials(options);
  }
  auto channel = grpc::CreateChannel(flags.gateway, credentials);
  if (!channel->WaitForConnected(absl::ToChronoTime(absl::Now() + timeout))) {
    std::cout << "FAIL connect to " << flags.gateway << std::endl;
    return 1;
  }
  Report report;
  AccountOps ops(channel);
  pb::Gateway::Stub& stub = ops.stub();
  const std::string suffix = RandomSuffix();

  // ---- Accounts and login ("Accounts and keys", "A client, step by step" 1–4) ----
  absl::StatusOr<Account> alice_or = ops.Register("conf-a-" + suffix);
  report.Check("Register: a new user id is registered and logs in", alice_or.ok(),
               alice_or.ok() ? "" : Describe(alice_or.status()));
  absl::StatusOr<Account> bob_or = ops.Register("conf-b-" + suffix);
  report.Check("Register: a second user", bob_or.ok(),
               bob_or.ok() ? "" : Describe(bob_or.status()));
  if (!alice_or.ok() || !bob_or.ok()) {
    std::cout << "stopped: the remaining checks need two accounts" << std::endl;
    return 1;
  }
  Account alice = *alice_or;
  Account bob = *bob_or;

  absl::StatusOr<Account> again = ops.Register(alice.user, /*login=*/false);
  report.Check("Register: a taken user id is ALREADY_EXISTS",
               again.status().code() == absl::StatusCode::kAlreadyExists,
               Describe(again.status()));

  {
    absl::StatusOr<pb::GetChallengeResponse> challenge = ops.Challenge(bob.user, 1);
    report.Check("GetChallenge: 32 bytes and an audience",
                 challenge.ok() && challenge->challenge().size() == 32 &&
                     !challenge->audience().empty(),
                 challenge.ok() ? challenge->ShortDebugString() : Describe(challenge.status()));
    if (challenge.ok()) {
      const std::string statement = statement::EncodeLogin(bob.user, 1, challenge->challenge(),
                                                           challenge->audience());
      absl::StatusOr<std::string> signature = ops.Sign(bob.devices.at(1), statement);
      pb::LoginResponse response;
      grpc::Status status =
          ops.LoginWith(bob.user, 1, challenge->challenge(), signature.value_or(""), &response);
      const uint64_t now_ms = static_cast<uint64_t>(absl::ToUnixMillis(absl::Now()));
      report.Check("Login: the signed padlock-login-v1 gives a token, its expiry and list version",
                   status.ok() && !response.token().empty() && response.expires_at_ms() > now_ms &&
                       response.device_list_version() == 1,
                   status.ok() ? response.ShortDebugString() : Describe(status));
      pb::LoginResponse reused;
      status = ops.LoginWith(bob.user, 1, challenge->challenge(), signature.value_or(""), &reused);
      report.Check("Login: a challenge is good for one Login only (UNAUTHENTICATED)",
                   status.error_code() == grpc::StatusCode::UNAUTHENTICATED, Describe(status));
    }
    challenge = ops.Challenge(bob.user, 1);
    if (challenge.ok()) {
      // Signed with alice's key: not bob's.
      absl::StatusOr<std::string> wrong = ops.Sign(
          alice.devices.at(1), statement::EncodeLogin(bob.user, 1, challenge->challenge(),
                                                      challenge->audience()));
      pb::LoginResponse response;
      grpc::Status status =
          ops.LoginWith(bob.user, 1, challenge->challenge(), wrong.value_or(""), &response);
      report.Check("Login: a signature by another key is UNAUTHENTICATED",
                   status.error_code() == grpc::StatusCode::UNAUTHENTICATED, Describe(status));
    }
    absl::StatusOr<pb::GetChallengeResponse> bad = ops.Challenge(bob.user, 0);
    report.Check("GetChallenge: device_id 0 is INVALID_ARGUMENT",
                 bad.status().code() == absl::StatusCode::kInvalidArgument,
                 Describe(bad.status()));
  }

  absl::StatusOr<std::string> bob_token = ops.Login(bob, 1);
  if (!bob_token.ok()) {
    report.Check("Login: bob", false, Describe(bob_token.status()));
    return 1;
  }

  {
    pb::GatewayClaimBundlesRequest request;
    request.set_user_id(bob.user);
    pb::ClaimBundlesResponse response;
    grpc::ClientContext no_token;
    grpc::Status status = stub.ClaimBundles(&no_token, request, &response);
    report.Check("ClaimBundles: without a token is UNAUTHENTICATED",
                 status.error_code() == grpc::StatusCode::UNAUTHENTICATED, Describe(status));

    grpc::ClientContext context;
    e2e::Authorize(context, alice.primary_token);
    status = stub.ClaimBundles(&context, request, &response);
    const bool one_bundle = status.ok() && response.bundles_size() == 1;
    const pb::PreKeyBundle* bundle = one_bundle ? &response.bundles(0) : nullptr;
    report.Check(
        "ClaimBundles: one bundle per device with its keys, a one-time prekey and the signed list",
        bundle != nullptr && bundle->device().user_id() == bob.user &&
            bundle->device().device_id() == 1 &&
            bundle->identity_key() == bob.devices.at(1).identity.public_key &&
            bundle->registration_id() == bob.devices.at(1).registration_id &&
            bundle->signed_prekey().signature().size() == 64 && bundle->has_one_time_prekey() &&
            response.device_list().list().version() == 1 &&
            response.device_list().signature().size() == 64,
        status.ok() ? response.ShortDebugString().substr(0, 300) : Describe(status));

    grpc::ClientContext unknown_context;
    e2e::Authorize(unknown_context, alice.primary_token);
    pb::GatewayClaimBundlesRequest unknown;
    unknown.set_user_id("conf-nobody-" + suffix);
    status = stub.ClaimBundles(&unknown_context, unknown, &response);
    report.Check("ClaimBundles: an unknown user is NOT_FOUND",
                 status.error_code() == grpc::StatusCode::NOT_FOUND, Describe(status));

    grpc::ClientContext list_context;
    e2e::Authorize(list_context, alice.primary_token);
    pb::GetDeviceListRequest list_request;
    list_request.set_user_id("conf-nobody-" + suffix);
    pb::GetDeviceListResponse list_response;
    status = stub.GetDeviceList(&list_context, list_request, &list_response);
    report.Check("GetDeviceList: an unknown user is NOT_FOUND",
                 status.error_code() == grpc::StatusCode::NOT_FOUND, Describe(status));
  }

  // ---- The device stream ("A client, step by step" 5–9, "Acknowledgements") ----
  {
    auto garbage = DeviceConn::Open(stub, "not-a-token");
    std::optional<grpc::Status> ended = garbage->WaitEnded(timeout);
    report.Check("Connect: a bad token ends the stream UNAUTHENTICATED",
                 ended && ended->error_code() == grpc::StatusCode::UNAUTHENTICATED,
                 ended ? Describe(*ended) : "did not end");
  }

  DeviceConn::Options manual{.auto_ack = false, .revision = 2};
  auto bob_conn = DeviceConn::Open(stub, *bob_token, manual);
  std::optional<pb::Connected> connected = bob_conn->WaitConnected(timeout);
  const std::vector<pb::ServerFrame> first_frames = bob_conn->Frames();
  report.Check("Connect: the first frame is connected; revision 2 when asked; max_unacked > 0",
               connected && !first_frames.empty() && first_frames[0].has_connected() &&
                   connected->stream_revision() == 2 && connected->max_unacked() > 0 &&
                   connected->epoch() > 0,
               connected ? connected->ShortDebugString() : "no connected frame");
  auto queue_empty = bob_conn->WaitFrame(
      [](const pb::ServerFrame& f) { return f.has_queue_empty(); }, timeout);
  report.Check("Connect: queue_empty on an empty inbox, last_sequence 0",
               queue_empty && queue_empty->queue_empty().last_sequence() == 0,
               queue_empty ? queue_empty->ShortDebugString() : "no queue_empty");

  auto alice_conn = DeviceConn::Open(stub, alice.primary_token, {.auto_ack = true, .revision = 2});
  alice_conn->WaitConnected(timeout);

  const pb::OutgoingMessage first = e2e::OneToOne(alice, 1, bob, "conformance first " + suffix);
  std::optional<pb::SendResult> sent = alice_conn->Result(alice_conn->Send(first), timeout);
  report.Check("Send: accepted, with a server id and sequence for the device",
               sent && sent->has_accepted() && sent->accepted().placements_size() == 1 &&
                   !sent->accepted().placements(0).server_id().empty() &&
                   sent->accepted().placements(0).sequence() >= 1,
               Describe(sent));

  bob_conn->WaitEnvelopes(1, timeout);
  std::optional<pb::Envelope> live = FindEnvelope(*bob_conn, first.message_id());
  report.Check("Deliver: live, with sender, recipient, registration id, type and the ciphertext "
               "unchanged",
               live && live->sender().user_id() == alice.user && live->sender().device_id() == 1 &&
                   live->recipient().user_id() == bob.user && live->recipient().device_id() == 1 &&
                   live->recipient_registration_id() == bob.devices.at(1).registration_id &&
                   live->type() == pb::ENVELOPE_TYPE_MESSAGE &&
                   live->ciphertext() == first.recipients(0).ciphertext() &&
                   !live->server_id().empty() && live->sequence() >= 1 &&
                   live->server_timestamp_ms() > 0,
               live ? live->ShortDebugString().substr(0, 300) : "no envelope");

  // Not acked: it must come again on the next stream, with the same server id and sequence.
  bob_conn->Cancel();
  bob_conn->WaitEnded(timeout);
  bob_conn = DeviceConn::Open(stub, *bob_token, manual);
  bob_conn->WaitConnected(timeout);
  queue_empty = bob_conn->WaitFrame([](const pb::ServerFrame& f) { return f.has_queue_empty(); },
                                    timeout);
  std::optional<pb::Envelope> again_env = FindEnvelope(*bob_conn, first.message_id());
  report.Check("Redelivery: an envelope not acked comes again after a reconnect, same server id "
               "and sequence, before queue_empty",
               live && again_env && again_env->server_id() == live->server_id() &&
                   again_env->sequence() == live->sequence() && queue_empty,
               again_env ? again_env->ShortDebugString().substr(0, 200) : "not redelivered");
  report.Check("queue_empty.last_sequence is the last sequence delivered on this stream",
               queue_empty && again_env &&
                   queue_empty->queue_empty().last_sequence() == again_env->sequence(),
               queue_empty ? queue_empty->ShortDebugString() : "no queue_empty");

  // Acked: it stops coming. Acks are not confirmed, so it may come once more after a quick
  // reconnect (PROTOCOL.md); it is acked again and must be gone within the deadline.
  if (again_env) {
    bob_conn->Write(AckUpTo(again_env->server_id()));
    int reconnects = 0;
    bool gone = false;
    const absl::Time deadline = absl::Now() + timeout;
    while (!gone && absl::Now() < deadline) {
      bob_conn->Cancel();
      bob_conn->WaitEnded(timeout);
      bob_conn = DeviceConn::Open(stub, *bob_token, manual);
      ++reconnects;
      if (!bob_conn->WaitQueueEmpty(timeout)) break;
      std::optional<pb::Envelope> back = FindEnvelope(*bob_conn, first.message_id());
      gone = !back.has_value();
      if (back) bob_conn->Write(AckUpTo(back->server_id()));
    }
    report.Check("Acks: an acked envelope stops coming after reconnects", gone,
                 absl::StrCat("still delivered after ", reconnects, " reconnects"));
    if (gone && reconnects > 1) {
      report.Note(absl::StrCat("the acked envelope came back ", reconnects - 1,
                               " time(s) (allowed: acks are not confirmed)"));
    }
  }

  // Sender-side dedupe and order: the same message id twice, then a marker.
  {
    const pb::OutgoingMessage twice = e2e::OneToOne(alice, 1, bob, "conformance twice " + suffix);
    const pb::OutgoingMessage marker = e2e::OneToOne(alice, 1, bob, "conformance marker " + suffix);
    std::optional<pb::SendResult> r1 = alice_conn->Result(alice_conn->Send(twice), timeout);
    std::optional<pb::SendResult> r2 = alice_conn->Result(alice_conn->Send(twice), timeout);
    std::optional<pb::SendResult> r3 = alice_conn->Result(alice_conn->Send(marker), timeout);
    const bool marker_seen =
        bob_conn
            ->WaitFrame(
                [&](const pb::ServerFrame& f) {
                  for (const pb::Envelope& e : f.deliver().envelopes()) {
                    if (e.message_id() == marker.message_id()) return true;
                  }
                  return false;
                },
                timeout)
            .has_value();
    int copies = 0;
    int twice_index = -1;
    int marker_index = -1;
    const std::vector<pb::Envelope> envelopes = bob_conn->Envelopes();
    for (size_t i = 0; i < envelopes.size(); ++i) {
      if (envelopes[i].message_id() == twice.message_id()) {
        ++copies;
        twice_index = static_cast<int>(i);
      }
      if (envelopes[i].message_id() == marker.message_id()) marker_index = static_cast<int>(i);
    }
    report.Check("Dedupe: a send retried with the same message_id within 60 s is stored once",
                 r1 && r1->has_accepted() && r2 && !r2->has_refused() && !r2->has_mismatch() &&
                     marker_seen && copies == 1,
                 absl::StrCat("copies ", copies, "; first ", Describe(r1), "; retry ",
                              Describe(r2)));
    report.Check("Order: sends of one stream reach the recipient in the order sent",
                 r3 && r3->has_accepted() && twice_index >= 0 && marker_index > twice_index,
                 absl::StrCat("positions ", twice_index, ", ", marker_index));
    if (!envelopes.empty()) bob_conn->Write(AckUpTo(envelopes.back().server_id()));
  }

  // Refusals and mismatches ("What the server tells you").
  {
    pb::OutgoingMessage wrong_devices = e2e::OneToOne(alice, 1, bob, "conformance wrong " + suffix);
    wrong_devices.mutable_recipients(0)->mutable_device()->set_device_id(7);
    std::optional<pb::SendResult> r = alice_conn->Result(alice_conn->Send(wrong_devices), timeout);
    bool mismatch = r && r->has_mismatch() && r->mismatch().users_size() == 1;
    if (mismatch) {
      const pb::DeviceMismatch& m = r->mismatch().users(0);
      mismatch = m.user_id() == bob.user && m.missing_device_ids_size() == 1 &&
                 m.missing_device_ids(0) == 1 && m.extra_device_ids_size() == 1 &&
                 m.extra_device_ids(0) == 7;
    }
    report.Check("Send: a missing and an extra device give mismatch{missing [1], extra [7]}",
                 mismatch, Describe(r));

    pb::OutgoingMessage stale = e2e::OneToOne(alice, 1, bob, "conformance stale " + suffix);
    stale.mutable_recipients(0)->set_registration_id(bob.devices.at(1).registration_id + 1);
    r = alice_conn->Result(alice_conn->Send(stale), timeout);
    report.Check("Send: a wrong registration id gives mismatch{stale [1]}",
                 r && r->has_mismatch() && r->mismatch().users_size() == 1 &&
                     r->mismatch().users(0).stale_device_ids_size() == 1 &&
                     r->mismatch().users(0).stale_device_ids(0) == 1,
                 Describe(r));

    pb::OutgoingMessage unknown = e2e::OneToOne(alice, 1, bob, "conformance unknown " + suffix);
    unknown.mutable_recipients(0)->mutable_device()->set_user_id("conf-nobody-" + suffix);
    r = alice_conn->Result(alice_conn->Send(unknown), timeout);
    report.Check("Send: an unknown recipient is refused NOT_FOUND",
                 Refused(r, grpc::StatusCode::NOT_FOUND), Describe(r));

    pb::OutgoingMessage short_id = e2e::OneToOne(alice, 1, bob, "conformance short " + suffix);
    short_id.set_message_id("short");
    r = alice_conn->Result(alice_conn->Send(short_id), timeout);
    report.Check("Send: a message_id that is not 16 bytes is refused INVALID_ARGUMENT",
                 Refused(r, grpc::StatusCode::INVALID_ARGUMENT), Describe(r));

    pb::OutgoingMessage big = e2e::OneToOne(alice, 1, bob, "conformance big " + suffix);
    big.mutable_recipients(0)->set_ciphertext(std::string(64 * 1024 + 1, 'x'));
    r = alice_conn->Result(alice_conn->Send(big), timeout);
    report.Check("Send: a per-device ciphertext over 64 KiB is refused INVALID_ARGUMENT",
                 Refused(r, grpc::StatusCode::INVALID_ARGUMENT), Describe(r));
  }

  // A bad frame gets an error frame; the stream stays open.
  {
    pb::ClientFrame bogus;
    bogus.mutable_ack()->add_server_ids("0-1");
    alice_conn->Write(bogus);
    auto error = alice_conn->WaitFrame([](const pb::ServerFrame& f) { return f.has_error(); },
                                       timeout);
    pb::ClientFrame ping;
    ping.set_ping(4242);
    alice_conn->Write(ping);
    auto pong = alice_conn->WaitFrame(
        [](const pb::ServerFrame& f) { return f.frame_case() == pb::ServerFrame::kPong &&
                                              f.pong() == 4242; },
        timeout);
    const int invalid_argument = static_cast<int>(grpc::StatusCode::INVALID_ARGUMENT);
    report.Check("Stream: an ack for nothing delivered on this stream gets error{INVALID_ARGUMENT}"
                 " and the stream stays open (ping answered)",
                 error && error->error().code() == invalid_argument && pong &&
                     !alice_conn->ended(),
                 error ? error->ShortDebugString() : "no error frame");
  }

  // Revision 1: outcomes as send_result frames.
  {
    auto rev1 = DeviceConn::Open(stub, *bob_token, {.auto_ack = true, .revision = 0});
    std::optional<pb::Connected> c1 = rev1->WaitConnected(timeout);
    // bob's stream above is displaced by this one.
    auto displaced = bob_conn->WaitFrame(
        [](const pb::ServerFrame& f) { return f.has_displaced(); }, timeout);
    std::optional<grpc::Status> ended = bob_conn->WaitEnded(timeout);
    report.Check("Displacement: a newer stream of the device sends displaced{by_epoch} to the "
                 "older one, which ends OK",
                 c1 && displaced && displaced->displaced().by_epoch() == c1->epoch() && ended &&
                     ended->ok(),
                 displaced ? displaced->ShortDebugString() + (ended ? " " + Describe(*ended) : "")
                           : "no displaced frame");
    report.Check("Connect: without padlock-stream-revision the stream is revision 1",
                 c1 && c1->stream_revision() == 1,
                 c1 ? c1->ShortDebugString() : "no connected frame");
    const pb::OutgoingMessage reply = e2e::OneToOne(bob, 1, alice, "conformance reply " + suffix);
    const uint64_t id = rev1->Send(reply);
    auto frame = rev1->WaitFrame(
        [&](const pb::ServerFrame& f) {
          if (f.has_send_result() && f.send_result().request_id() == id) return true;
          for (const pb::SendResult& s : f.send_results()) {
            if (s.request_id() == id) return true;
          }
          return false;
        },
        timeout);
    report.Check("Revision 1: the outcome of a send comes as a send_result frame",
                 frame && frame->has_send_result() && frame->send_results_size() == 0 &&
                     frame->send_result().has_accepted(),
                 frame ? frame->ShortDebugString() : "no outcome");
    const bool got = alice_conn
                         ->WaitFrame(
                             [&](const pb::ServerFrame& f) {
                               for (const pb::Envelope& e : f.deliver().envelopes()) {
                                 if (e.message_id() == reply.message_id()) return true;
                               }
                               return false;
                             },
                             timeout)
                         .has_value();
    report.Check("Deliver: the reply reaches the other account's open stream", got);
  }

  report.Note("content kinds and the unsupported receipt live inside the ciphertext and are not "
              "server-observable: padlock-vectors (content.json) and the SDK's contract_e2e_test "
              "check them");
  std::cout << (report.failures() == 0 ? "all checks passed"
                                       : absl::StrCat(report.failures(), " check(s) failed"))
            << std::endl;
  return report.failures() == 0 ? 0 : 1;
}

}  // namespace
}  // namespace padlock::conformance

int main(int argc, char** argv) {
  padlock::conformance::Flags flags;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    auto value = [&]() -> std::string { return i + 1 < argc ? argv[++i] : ""; };
    if (arg == "--gateway") {
      flags.gateway = value();
    } else if (arg == "--ca-file") {
      flags.ca_file = value();
    } else if (arg == "--timeout-seconds") {
      if (!absl::SimpleAtoi(value(), &flags.timeout_seconds) || flags.timeout_seconds <= 0) {
        std::cerr << "--timeout-seconds: a positive number" << std::endl;
        return 2;
      }
    } else {
      std::cerr << "usage: padlock-conformance --gateway HOST:PORT [--ca-file PEM] "
                   "[--timeout-seconds S]"
                << std::endl;
      return 2;
    }
  }
  if (flags.gateway.empty()) {
    std::cerr << "--gateway HOST:PORT is required" << std::endl;
    return 2;
  }
  return padlock::conformance::Run(flags);
}
