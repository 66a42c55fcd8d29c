#include "clients/sdk/gateway_client.h"

#include <chrono>
#include <fstream>
#include <random>
#include <sstream>
#include <utility>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "common/statement/signed_statement.h"

namespace padlock::client {
namespace {

uint64_t NowMs() {
  return static_cast<uint64_t>(absl::ToUnixMillis(absl::Now()));
}

absl::StatusCode ToAbslCode(grpc::StatusCode code) {
  return static_cast<absl::StatusCode>(static_cast<int>(code));
}

std::string Describe(std::string_view what, const grpc::Status& status) {
  static const char* kNames[] = {"OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT",
                                 "DEADLINE_EXCEEDED", "NOT_FOUND", "ALREADY_EXISTS",
                                 "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION",
                                 "ABORTED", "OUT_OF_RANGE", "UNIMPLEMENTED", "INTERNAL",
                                 "UNAVAILABLE", "DATA_LOSS", "UNAUTHENTICATED"};
  const int code = static_cast<int>(status.error_code());
  const std::string name = code >= 0 && code <= 16 ? kNames[code] : absl::StrCat("code ", code);
  return status.error_message().empty()
             ? absl::StrCat(std::string(what), ": ", name)
             : absl::StrCat(std::string(what), ": ", status.error_message());
}

}  // namespace

absl::Status WithRetryAfter(absl::Status status, absl::Duration retry_after) {
  status.SetPayload(absl::string_view(kRetryAfterPayload.data(), kRetryAfterPayload.size()),
                    absl::Cord(absl::StrCat(absl::ToInt64Milliseconds(retry_after))));
  return status;
}

std::optional<absl::Duration> RetryAfter(const absl::Status& status) {
  absl::optional<absl::Cord> payload = status.GetPayload(
      absl::string_view(kRetryAfterPayload.data(), kRetryAfterPayload.size()));
  if (!payload.has_value()) return std::nullopt;
  int64_t ms = 0;
  if (!absl::SimpleAtoi(std::string(*payload), &ms) || ms < 0) return std::nullopt;
  return absl::Milliseconds(ms);
}

absl::Status FromGrpc(const grpc::Status& status, const grpc::ClientContext* context,
                      std::string_view what) {
  if (status.ok()) return absl::OkStatus();
  if (status.error_code() == grpc::StatusCode::UNAVAILABLE) {
    return absl::UnavailableError(Describe(what, status));
  }
  absl::Status out(ToAbslCode(status.error_code()), Describe(what, status));
  if (status.error_code() == grpc::StatusCode::RESOURCE_EXHAUSTED && context != nullptr) {
    const auto& trailers = context->GetServerTrailingMetadata();
    auto it = trailers.find("retry-after-ms");
    int64_t ms = 0;
    if (it != trailers.end() &&
        absl::SimpleAtoi(absl::string_view(it->second.data(), it->second.size()), &ms) &&
        ms >= 0) {
      out = WithRetryAfter(std::move(out), absl::Milliseconds(ms));
    }
  }
  return out;
}

absl::StatusOr<std::unique_ptr<GatewayClient>> GatewayClient::Create(
    GatewayClientOptions options) {
  if (options.target.empty()) return absl::InvalidArgumentError("no gateway address given");
  std::shared_ptr<grpc::ChannelCredentials> credentials;
  if (options.ca_file.empty()) {
    credentials = grpc::InsecureChannelCredentials();
  } else {
    std::ifstream in(options.ca_file);
    if (!in) return absl::NotFoundError(absl::StrCat("cannot read CA file ", options.ca_file));
    std::stringstream pem;
    pem << in.rdbuf();
    grpc::SslCredentialsOptions ssl;
    ssl.pem_root_certs = pem.str();
    credentials = grpc::SslCredentials(ssl);
  }
  grpc::ChannelArguments args;
  // Keep the device stream alive through idle NATs; the server allows pings without calls.
  args.SetInt(GRPC_ARG_KEEPALIVE_TIME_MS, 30000);
  args.SetInt(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, 10000);
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 200);
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 5000);
  auto channel = grpc::CreateCustomChannel(options.target, credentials, args);
  return std::unique_ptr<GatewayClient>(new GatewayClient(std::move(options), std::move(channel)));
}

GatewayClient::GatewayClient(GatewayClientOptions options, std::shared_ptr<grpc::Channel> channel)
    : options_(std::move(options)),
      channel_(std::move(channel)),
      stub_(padlock::v1::Gateway::NewStub(channel_)) {}

void GatewayClient::SetDevice(const padlock::v1::DeviceAddress& device, LoginSigner signer) {
  std::lock_guard<std::mutex> lock(mu_);
  device_ = device;
  signer_ = std::move(signer);
  token_.clear();
  token_expires_at_ms_ = 0;
}

void GatewayClient::Prepare(grpc::ClientContext& context) const {
  context.set_deadline(std::chrono::system_clock::now() +
                       absl::ToChronoMilliseconds(options_.call_timeout));
}

absl::StatusOr<padlock::v1::RegisterResponse> GatewayClient::Register(
    const padlock::v1::RegisterRequest& request) {
  grpc::ClientContext context;
  Prepare(context);
  padlock::v1::RegisterResponse response;
  grpc::Status status = stub_->Register(&context, request, &response);
  if (!status.ok()) return FromGrpc(status, &context, "register");
  return response;
}

absl::Status GatewayClient::Login() {
  std::lock_guard<std::mutex> login_lock(login_mu_);
  padlock::v1::DeviceAddress device;
  LoginSigner signer;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!signer_) return absl::FailedPreconditionError("login: no device set");
    device = device_;
    signer = signer_;
  }
  padlock::v1::GetChallengeRequest challenge_request;
  *challenge_request.mutable_device() = device;
  padlock::v1::GetChallengeResponse challenge;
  {
    grpc::ClientContext context;
    Prepare(context);
    grpc::Status status = stub_->GetChallenge(&context, challenge_request, &challenge);
    if (!status.ok()) return FromGrpc(status, &context, "get login challenge");
  }
  absl::StatusOr<std::string> signature =
      signer(statement::EncodeLogin(device.user_id(), device.device_id(), challenge.challenge(),
                                    challenge.audience()));
  if (!signature.ok()) return signature.status();
  padlock::v1::LoginRequest login;
  *login.mutable_device() = device;
  login.set_challenge(challenge.challenge());
  login.set_signature(*signature);
  padlock::v1::LoginResponse response;
  grpc::ClientContext context;
  Prepare(context);
  grpc::Status status = stub_->Login(&context, login, &response);
  if (!status.ok()) return FromGrpc(status, &context, "login");
  std::lock_guard<std::mutex> lock(mu_);
  token_ = response.token();
  token_expires_at_ms_ = response.expires_at_ms();
  return absl::OkStatus();
}

absl::StatusOr<std::string> GatewayClient::Token() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    // A minute of margin so that a token does not expire in the middle of a call.
    if (!token_.empty() && token_expires_at_ms_ > NowMs() + 60000) return token_;
  }
  if (absl::Status status = Login(); !status.ok()) return status;
  std::lock_guard<std::mutex> lock(mu_);
  return token_;
}

void GatewayClient::InvalidateToken(const std::string& token) {
  std::lock_guard<std::mutex> lock(mu_);
  if (token_ == token) {
    token_.clear();
    token_expires_at_ms_ = 0;
  }
}

template <typename Request, typename Response, typename Method>
absl::StatusOr<Response> GatewayClient::CallAuthed(const Request& request, Method method,
                                                   std::string_view what) {
  // One retry after UNAUTHENTICATED: the token may have expired or predate a device-list change.
  for (int attempt = 0;; ++attempt) {
    absl::StatusOr<std::string> token = Token();
    if (!token.ok()) return token.status();
    grpc::ClientContext context;
    Prepare(context);
    context.AddMetadata("authorization", absl::StrCat("Bearer ", *token));
    Response response;
    grpc::Status status = (stub_.get()->*method)(&context, request, &response);
    if (status.ok()) return response;
    if (status.error_code() == grpc::StatusCode::UNAUTHENTICATED && attempt == 0) {
      InvalidateToken(*token);
      continue;
    }
    return FromGrpc(status, &context, what);
  }
}

absl::StatusOr<padlock::v1::PublishPreKeysResponse> GatewayClient::PublishPreKeys(
    const padlock::v1::GatewayPublishPreKeysRequest& request) {
  return CallAuthed<padlock::v1::GatewayPublishPreKeysRequest,
                    padlock::v1::PublishPreKeysResponse>(
      request, &padlock::v1::Gateway::Stub::PublishPreKeys, "publish prekeys");
}

absl::StatusOr<padlock::v1::ClaimBundlesResponse> GatewayClient::ClaimBundles(
    const std::string& user_id, uint32_t device_id) {
  padlock::v1::GatewayClaimBundlesRequest request;
  request.set_user_id(user_id);
  request.set_device_id(device_id);
  return CallAuthed<padlock::v1::GatewayClaimBundlesRequest, padlock::v1::ClaimBundlesResponse>(
      request, &padlock::v1::Gateway::Stub::ClaimBundles,
      absl::StrCat("claim bundles of ", user_id));
}

absl::StatusOr<padlock::v1::GetDeviceListResponse> GatewayClient::GetDeviceList(
    const std::string& user_id) {
  padlock::v1::GetDeviceListRequest request;
  request.set_user_id(user_id);
  return CallAuthed<padlock::v1::GetDeviceListRequest, padlock::v1::GetDeviceListResponse>(
      request, &padlock::v1::Gateway::Stub::GetDeviceList,
      absl::StrCat("device list of ", user_id));
}

absl::StatusOr<padlock::v1::PublishDeviceListResponse> GatewayClient::PublishDeviceList(
    const padlock::v1::GatewayPublishDeviceListRequest& request) {
  return CallAuthed<padlock::v1::GatewayPublishDeviceListRequest,
                    padlock::v1::PublishDeviceListResponse>(
      request, &padlock::v1::Gateway::Stub::PublishDeviceList, "publish device list");
}

absl::StatusOr<padlock::v1::ChangeIdentityResponse> GatewayClient::ChangeIdentity(
    const padlock::v1::GatewayChangeIdentityRequest& request) {
  return CallAuthed<padlock::v1::GatewayChangeIdentityRequest,
                    padlock::v1::ChangeIdentityResponse>(
      request, &padlock::v1::Gateway::Stub::ChangeIdentity, "change identity");
}

absl::StatusOr<padlock::v1::DeleteAccountResponse> GatewayClient::DeleteAccount() {
  return CallAuthed<padlock::v1::GatewayDeleteAccountRequest,
                    padlock::v1::DeleteAccountResponse>(
      padlock::v1::GatewayDeleteAccountRequest(), &padlock::v1::Gateway::Stub::DeleteAccount,
      "delete account");
}

std::unique_ptr<TransportStream> GatewayClient::OpenStream() { return GatewayStream::Start(*this); }

// ---------------------------------------------------------------------------------------------

std::unique_ptr<GatewayStream> GatewayStream::Start(GatewayClient& client) {
  std::unique_ptr<GatewayStream> stream(new GatewayStream(client));
  stream->thread_ = std::thread([s = stream.get()] { s->Run(); });
  return stream;
}

GatewayStream::GatewayStream(GatewayClient& client) : client_(client) {}

GatewayStream::~GatewayStream() { Stop(); }

void GatewayStream::Stop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
    if (context_ != nullptr) context_->TryCancel();
  }
  cv_.notify_all();
  if (thread_.joinable() && thread_.get_id() != std::this_thread::get_id()) thread_.join();
}

bool GatewayStream::connected() const {
  std::lock_guard<std::mutex> lock(mu_);
  return connected_;
}

absl::Status GatewayStream::Write(const padlock::v1::ClientFrame& frame) {
  std::lock_guard<std::mutex> lock(write_mu_);
  if (stream_ == nullptr || !connected()) return absl::UnavailableError("not connected");
  if (!stream_->Write(frame)) return absl::UnavailableError("device stream closed");
  return absl::OkStatus();
}

void GatewayStream::Push(StreamEvent event) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    events_.push_back(std::move(event));
  }
  cv_.notify_all();
}

std::optional<StreamEvent> GatewayStream::Next(absl::Duration timeout) {
  std::unique_lock<std::mutex> lock(mu_);
  cv_.wait_for(lock, absl::ToChronoMilliseconds(timeout), [&] { return !events_.empty(); });
  if (events_.empty()) return std::nullopt;
  StreamEvent event = std::move(events_.front());
  events_.pop_front();
  return event;
}

bool GatewayStream::Sleep(absl::Duration d) {
  std::unique_lock<std::mutex> lock(mu_);
  cv_.wait_for(lock, absl::ToChronoMilliseconds(d), [&] { return stopping_; });
  return !stopping_;
}

void GatewayStream::Run() {
  absl::Duration backoff = client_.options().min_backoff;
  std::mt19937_64 jitter(std::random_device{}());
  auto stop_with = [&](absl::Status status) {
    Push(StreamEvent{StreamEvent::Kind::kStopped, {}, std::move(status)});
  };
  for (;;) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (stopping_) break;
    }
    absl::StatusOr<std::string> token = client_.Token();
    if (!token.ok()) {
      // The server does not know this device (or its key): reconnecting cannot help.
      if (absl::IsUnauthenticated(token.status()) || absl::IsFailedPrecondition(token.status())) {
        stop_with(token.status());
        return;
      }
      Push(StreamEvent{StreamEvent::Kind::kDisconnected, {}, token.status()});
    } else {
      grpc::ClientContext context;
      context.AddMetadata("authorization", absl::StrCat("Bearer ", *token));
      // Revision 2: outcomes come batched in `send_results` (unpacked below, so that the
      // consumers of StreamEvent see one `send_result` frame per outcome as in revision 1).
      context.AddMetadata("padlock-stream-revision", "2");
      {
        std::lock_guard<std::mutex> lock(mu_);
        if (stopping_) break;
        context_ = &context;
      }
      std::unique_ptr<grpc::ClientReaderWriter<padlock::v1::ClientFrame, padlock::v1::ServerFrame>>
          stream = client_.stub().Connect(&context);
      {
        std::lock_guard<std::mutex> lock(write_mu_);
        stream_ = stream.get();
      }
      bool final = false;
      bool drain = false;
      padlock::v1::ServerFrame frame;
      while (stream->Read(&frame)) {
        if (frame.has_connected()) {
          std::lock_guard<std::mutex> lock(mu_);
          connected_ = true;
          backoff = client_.options().min_backoff;
        }
        if (frame.has_displaced()) final = true;
        if (frame.has_closing()) {
          switch (frame.closing().reason()) {
            case padlock::v1::Closing::REASON_REVOKED:
              final = true;
              break;
            case padlock::v1::Closing::REASON_TOKEN_EXPIRED:
              client_.InvalidateToken(*token);
              drain = true;
              break;
            default:
              drain = true;
          }
        }
        for (padlock::v1::SendResult& result : *frame.mutable_send_results()) {
          padlock::v1::ServerFrame one;
          one.mutable_send_result()->Swap(&result);
          Push(StreamEvent{StreamEvent::Kind::kFrame, std::move(one), absl::OkStatus()});
        }
        frame.clear_send_results();
        if (frame.frame_case() != padlock::v1::ServerFrame::FRAME_NOT_SET) {
          Push(StreamEvent{StreamEvent::Kind::kFrame, std::move(frame), absl::OkStatus()});
        }
        frame = padlock::v1::ServerFrame();
      }
      {
        std::lock_guard<std::mutex> lock(mu_);
        connected_ = false;
      }
      {
        // Waits for a write in flight to finish; later writes see no stream.
        std::lock_guard<std::mutex> lock(write_mu_);
        stream_ = nullptr;
      }
      grpc::Status status = stream->Finish();
      {
        std::lock_guard<std::mutex> lock(mu_);
        context_ = nullptr;
        if (stopping_) break;
      }
      if (final) {
        stop_with(absl::OkStatus());
        return;
      }
      if (status.error_code() == grpc::StatusCode::UNIMPLEMENTED ||
          status.error_code() == grpc::StatusCode::PERMISSION_DENIED) {
        stop_with(FromGrpc(status, &context, "device stream"));
        return;
      }
      if (status.error_code() == grpc::StatusCode::UNAUTHENTICATED) {
        client_.InvalidateToken(*token);
      }
      Push(StreamEvent{StreamEvent::Kind::kDisconnected, {},
                       status.ok() ? absl::UnavailableError("device stream closed")
                                   : FromGrpc(status, &context, "device stream")});
      if (drain) continue;  // the server asked us to come back (elsewhere) at once
    }
    const int64_t ms = absl::ToInt64Milliseconds(backoff);
    const uint64_t spread = static_cast<uint64_t>(ms) / 2 + 1;
    const absl::Duration wait =
        absl::Milliseconds(ms / 2 + static_cast<int64_t>(jitter() % spread));
    if (!Sleep(wait)) break;
    backoff = std::min(backoff * 2, client_.options().max_backoff);
  }
  stop_with(absl::CancelledError("device stream stopped"));
}

}  // namespace padlock::client
