#pragma once
// gRPC server metrics under the names of go-grpc-prometheus, which Grafana's gRPC dashboards
// query:
//   grpc_server_started_total{grpc_service,grpc_method,grpc_type}
//   grpc_server_handled_total{grpc_service,grpc_method,grpc_type,grpc_code}
//   grpc_server_handling_seconds{grpc_service,grpc_method,grpc_type}        (histogram)
//   grpc_server_msg_received_total / grpc_server_msg_sent_total{grpc_service,grpc_method,grpc_type}
// grpc_type is unary, client_stream, server_stream or bidi_stream; grpc_code is the code name
// (OK, UNIMPLEMENTED, ...). Recorded by a server interceptor, so every call the server
// dispatches is counted: the health and reflection services, methods a service leaves
// unimplemented, and method names the server does not know at all. The last kind is counted as
// grpc_service="unknown", grpc_method="unknown" so that a client cannot create label values at
// will. Labels never carry user or device ids.
//
// Thread-safe.

#include <grpcpp/support/server_interceptor.h>
#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

#include <array>
#include <memory>
#include <optional>
#include <shared_mutex>
#include <string>
#include <string_view>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"

namespace padlock::runtime {

class GrpcServerMetrics {
 public:
  // The series of one method.
  struct MethodSeries {
    prometheus::Counter* started;
    prometheus::Counter* msg_received;
    prometheus::Counter* msg_sent;
    prometheus::Histogram* handling_seconds;
    std::array<prometheus::Counter*, 17> handled;  // indexed by grpc::StatusCode
  };

  // Registers the metric families in `registry`, which must outlive this object.
  explicit GrpcServerMetrics(prometheus::Registry& registry);

  // The full service names the server serves ("padlock.v1.Gateway"). Methods are taken from the
  // generated protobuf descriptors (grpc.health.v1.Health is built in); their series are created
  // at once with every code at 0, so that rate() works from the first scrape. Until this is
  // called every method name is accepted as is.
  void SetServices(const std::vector<std::string>& full_service_names);

  // A factory to hand to ServerBuilder::experimental().SetInterceptorCreators. It refers to this
  // object, which must outlive the server.
  std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface> NewInterceptorFactory();

  // The series for a call of `full_method` ("/pkg.Service/Method"; nullptr or malformed counts
  // as unknown). Stable pointer, valid as long as this object.
  const MethodSeries& SeriesFor(const char* full_method,
                                grpc::experimental::ServerRpcInfo::Type type);

 private:
  const MethodSeries& SeriesForLabels(std::string_view service, std::string_view method,
                                      std::string_view type) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  prometheus::Family<prometheus::Counter>& started_;
  prometheus::Family<prometheus::Counter>& handled_;
  prometheus::Family<prometheus::Counter>& msg_received_;
  prometheus::Family<prometheus::Counter>& msg_sent_;
  prometheus::Family<prometheus::Histogram>& handling_seconds_;

  std::shared_mutex mu_;  // std, not absl: see executor.h
  // Known "/pkg.Service/Method" names; nullopt = accept every name.
  std::optional<absl::flat_hash_set<std::string>> known_methods_ ABSL_GUARDED_BY(mu_);
  // Keyed by "service/method/type".
  absl::flat_hash_map<std::string, std::unique_ptr<MethodSeries>> series_ ABSL_GUARDED_BY(mu_);
};

// "unary", "client_stream", "server_stream", "bidi_stream".
std::string_view GrpcTypeLabel(grpc::experimental::ServerRpcInfo::Type type);

}  // namespace padlock::runtime
