#pragma once
// Unparsable requests to unary and server-streaming methods answer INVALID_ARGUMENT with a reason.
//
// gRPC 1.51's callback API parses the request before the handler runs; when parsing fails
// (garbage bytes, a string field with invalid UTF-8) CallbackUnaryHandler::RunHandler answers
// UNIMPLEMENTED with an empty message instead — which tells a client author nothing and reads
// as "wrong server". The request never reaches our code, so this interceptor does it: a
// POST_RECV_MESSAGE without a message on a call that carries exactly one request means the
// request did not parse, and the UNIMPLEMENTED that follows is rewritten to
//   INVALID_ARGUMENT "malformed request: not a valid request message for /pkg.Service/Method"
// Client-streaming and bidi calls are left alone: there a missing message is also how a
// half-close looks (the gateway's device stream tells the two apart itself).

#include <grpcpp/support/server_interceptor.h>

#include <memory>

namespace padlock::runtime {

std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>
NewMalformedRequestInterceptorFactory();

}  // namespace padlock::runtime
