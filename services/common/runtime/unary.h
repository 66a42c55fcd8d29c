#pragma once
// Callback-API unary calls whose work blocks (Redis, PostgreSQL, another service): the reaction
// never blocks; the work runs on a BoundedExecutor and finishes the call with its mapped status.

#include <grpcpp/server_context.h>
#include <grpcpp/support/server_callback.h>

#include <string>
#include <string_view>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "services/common/runtime/absl_compat.h"
#include "services/common/runtime/executor.h"
#include "services/common/runtime/status.h"

namespace padlock::runtime {

// Finishes the call at once with `status` (e.g. a validation failure found on the gRPC thread).
inline grpc::ServerUnaryReactor* FinishUnary(grpc::CallbackServerContext* context,
                                             const absl::Status& status) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  reactor->Finish(ToGrpcStatus(status));
  return reactor;
}

// Runs `work(reactor)` on `executor`; `work` must finish `reactor` exactly once, at once or later
// (e.g. from the completion of an async call it starts). When the executor refuses the task
// (queue full: ResourceExhausted; shut down: Unavailable) the call finishes at once with that
// code and "<service> busy: <why>".
template <typename Work>
grpc::ServerUnaryReactor* OffloadUnaryReactor(grpc::CallbackServerContext* context,
                                              BoundedExecutor& executor, std::string_view service,
                                              Work work) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  absl::Status submitted =
      executor.Submit([reactor, work = std::move(work)]() mutable { work(reactor); });
  if (!submitted.ok()) {
    reactor->Finish(ToGrpcStatus(absl::Status(
        submitted.code(), absl::StrCat(ToAbsl(service), " busy: ", submitted.message()))));
  }
  return reactor;
}

// Runs `work` (a callable returning absl::Status) on `executor` and finishes the call with its
// status; a refused task as in OffloadUnaryReactor.
template <typename Work>
grpc::ServerUnaryReactor* OffloadUnary(grpc::CallbackServerContext* context,
                                       BoundedExecutor& executor, std::string_view service,
                                       Work work) {
  return OffloadUnaryReactor(context, executor, service,
                             [work = std::move(work)](grpc::ServerUnaryReactor* reactor) mutable {
                               reactor->Finish(ToGrpcStatus(work()));
                             });
}

}  // namespace padlock::runtime
