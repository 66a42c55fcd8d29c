#include "services/common/runtime/grpc_metrics.h"

#include <google/protobuf/descriptor.h>
#include <grpcpp/support/interceptor.h>
#include <grpcpp/support/status.h>

#include <chrono>
#include <mutex>
#include <utility>

#include "absl/strings/str_cat.h"
#include "services/common/runtime/status.h"

namespace padlock::runtime {
namespace {

using RpcType = grpc::experimental::ServerRpcInfo::Type;

constexpr std::string_view kUnknown = "unknown";
constexpr int kCodeCount = 17;  // OK .. UNAUTHENTICATED

// prometheus.DefBuckets (what go-grpc-prometheus uses) with sub-millisecond buckets in front:
// most Padlock calls finish well under 5 ms.
prometheus::Histogram::BucketBoundaries HandlingBuckets() {
  return {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10};
}

RpcType TypeOf(bool client_streaming, bool server_streaming) {
  if (client_streaming && server_streaming) return RpcType::BIDI_STREAMING;
  if (client_streaming) return RpcType::CLIENT_STREAMING;
  if (server_streaming) return RpcType::SERVER_STREAMING;
  return RpcType::UNARY;
}

// Splits "/pkg.Service/Method"; false when it has another shape.
bool SplitFullMethod(const char* full_method, std::string_view* service, std::string_view* method) {
  if (full_method == nullptr) return false;
  std::string_view text(full_method);
  if (text.size() < 4 || text.front() != '/') return false;
  const size_t slash = text.find('/', 1);
  if (slash == std::string_view::npos || slash == 1 || slash + 1 == text.size()) return false;
  *service = text.substr(1, slash - 1);
  *method = text.substr(slash + 1);
  return method->find('/') == std::string_view::npos;
}

// "service/method/type": the key of a method's series.
std::string SeriesKey(std::string_view service, std::string_view method, std::string_view type) {
  std::string key;
  key.reserve(service.size() + method.size() + type.size() + 2);
  key.append(service).append("/").append(method).append("/").append(type);
  return key;
}

// One per call. Created when the call is dispatched (that is the start), finished at the status.
class MetricsInterceptor final : public grpc::experimental::Interceptor {
 public:
  explicit MetricsInterceptor(const GrpcServerMetrics::MethodSeries* series)
      : series_(series), start_(std::chrono::steady_clock::now()) {
    series_->started->Increment();
  }

  // A call that ends without sending a status (the client went away first) counts as
  // CANCELLED, as its handler would report it.
  ~MetricsInterceptor() override {
    if (!finished_) Finish(grpc::StatusCode::CANCELLED);
  }

  void Intercept(grpc::experimental::InterceptorBatchMethods* methods) override {
    using Hook = grpc::experimental::InterceptionHookPoints;
    if (methods->QueryInterceptionHookPoint(Hook::POST_RECV_MESSAGE) &&
        methods->GetRecvMessage() != nullptr) {
      series_->msg_received->Increment();
    }
    if (methods->QueryInterceptionHookPoint(Hook::PRE_SEND_MESSAGE)) {
      series_->msg_sent->Increment();
    }
    if (methods->QueryInterceptionHookPoint(Hook::PRE_SEND_STATUS) && !finished_) {
      Finish(methods->GetSendStatus().error_code());
    }
    methods->Proceed();
  }

 private:
  void Finish(grpc::StatusCode code) {
    finished_ = true;
    int index = static_cast<int>(code);
    if (index < 0 || index >= kCodeCount) index = static_cast<int>(grpc::StatusCode::UNKNOWN);
    series_->handled[static_cast<size_t>(index)]->Increment();
    series_->handling_seconds->Observe(
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count());
  }

  const GrpcServerMetrics::MethodSeries* const series_;
  const std::chrono::steady_clock::time_point start_;
  // The read and write hooks of a stream may run concurrently; they touch only the atomic
  // counters. finished_ is written by the status hook, which runs once, and read by the
  // destructor, which runs after every hook of the call.
  bool finished_ = false;
};

class MetricsInterceptorFactory final
    : public grpc::experimental::ServerInterceptorFactoryInterface {
 public:
  explicit MetricsInterceptorFactory(GrpcServerMetrics* metrics) : metrics_(metrics) {}

  grpc::experimental::Interceptor* CreateServerInterceptor(
      grpc::experimental::ServerRpcInfo* info) override {
    return new MetricsInterceptor(&metrics_->SeriesFor(info->method(), info->type()));
  }

 private:
  GrpcServerMetrics* const metrics_;
};

}  // namespace

std::string_view GrpcTypeLabel(RpcType type) {
  switch (type) {
    case RpcType::UNARY:
      return "unary";
    case RpcType::CLIENT_STREAMING:
      return "client_stream";
    case RpcType::SERVER_STREAMING:
      return "server_stream";
    case RpcType::BIDI_STREAMING:
      return "bidi_stream";
  }
  return "unary";
}

GrpcServerMetrics::GrpcServerMetrics(prometheus::Registry& registry)
    : started_(prometheus::BuildCounter()
                   .Name("grpc_server_started_total")
                   .Help("Total number of RPCs started on the server.")
                   .Register(registry)),
      handled_(prometheus::BuildCounter()
                   .Name("grpc_server_handled_total")
                   .Help("Total number of RPCs completed on the server, regardless of success "
                         "or failure.")
                   .Register(registry)),
      msg_received_(prometheus::BuildCounter()
                        .Name("grpc_server_msg_received_total")
                        .Help("Total number of RPC stream messages received on the server.")
                        .Register(registry)),
      msg_sent_(prometheus::BuildCounter()
                    .Name("grpc_server_msg_sent_total")
                    .Help("Total number of gRPC stream messages sent by the server.")
                    .Register(registry)),
      handling_seconds_(prometheus::BuildHistogram()
                            .Name("grpc_server_handling_seconds")
                            .Help("Histogram of response latency (seconds) of gRPC that had "
                                  "been application-level handled by the server.")
                            .Register(registry)) {}

void GrpcServerMetrics::SetServices(const std::vector<std::string>& full_service_names) {
  struct Method {
    std::string service;
    std::string name;
    RpcType type;
  };
  std::vector<Method> methods;
  for (const std::string& service : full_service_names) {
    if (service == "grpc.health.v1.Health") {
      // The built-in health service is not a generated protobuf service in this gRPC.
      methods.push_back({service, "Check", RpcType::UNARY});
      methods.push_back({service, "Watch", RpcType::SERVER_STREAMING});
      continue;
    }
    const google::protobuf::ServiceDescriptor* descriptor =
        google::protobuf::DescriptorPool::generated_pool()->FindServiceByName(service);
    if (descriptor == nullptr) continue;  // its calls are counted as unknown
    for (int i = 0; i < descriptor->method_count(); ++i) {
      const google::protobuf::MethodDescriptor* m = descriptor->method(i);
      methods.push_back(
          {service, m->name(), TypeOf(m->client_streaming(), m->server_streaming())});
    }
  }
  std::unique_lock<std::shared_mutex> lock(mu_);
  known_methods_.emplace();
  for (const Method& m : methods) {
    known_methods_->insert(absl::StrCat("/", m.service, "/", m.name));
    SeriesForLabels(m.service, m.name, GrpcTypeLabel(m.type));
  }
}

std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>
GrpcServerMetrics::NewInterceptorFactory() {
  return std::make_unique<MetricsInterceptorFactory>(this);
}

const GrpcServerMetrics::MethodSeries& GrpcServerMetrics::SeriesFor(const char* full_method,
                                                                    RpcType type) {
  std::string_view service;
  std::string_view method;
  const bool well_formed = SplitFullMethod(full_method, &service, &method);
  const std::string_view type_label = GrpcTypeLabel(type);
  {
    // The common case: a known method whose series exist. Shared lock only.
    std::shared_lock<std::shared_mutex> lock(mu_);
    const bool known =
        well_formed && (!known_methods_.has_value() || known_methods_->contains(full_method));
    if (!known) {
      service = kUnknown;
      method = kUnknown;
    }
    auto it = series_.find(SeriesKey(service, method, type_label));
    if (it != series_.end()) return *it->second;
  }
  std::unique_lock<std::shared_mutex> lock(mu_);
  return SeriesForLabels(service, method, type_label);
}

const GrpcServerMetrics::MethodSeries& GrpcServerMetrics::SeriesForLabels(
    std::string_view service, std::string_view method, std::string_view type) {
  std::string key = SeriesKey(service, method, type);
  auto it = series_.find(key);
  if (it != series_.end()) return *it->second;

  const prometheus::Labels labels = {{"grpc_service", std::string(service)},
                                     {"grpc_method", std::string(method)},
                                     {"grpc_type", std::string(type)}};
  auto series = std::make_unique<MethodSeries>();
  series->started = &started_.Add(labels);
  series->msg_received = &msg_received_.Add(labels);
  series->msg_sent = &msg_sent_.Add(labels);
  series->handling_seconds = &handling_seconds_.Add(labels, HandlingBuckets());
  for (int code = 0; code < kCodeCount; ++code) {
    prometheus::Labels with_code = labels;
    with_code["grpc_code"] = std::string(GrpcCodeName(static_cast<grpc::StatusCode>(code)));
    series->handled[static_cast<size_t>(code)] = &handled_.Add(with_code);
  }
  const MethodSeries& result = *series;
  series_.emplace(std::move(key), std::move(series));
  return result;
}

}  // namespace padlock::runtime
