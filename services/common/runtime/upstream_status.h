#pragma once
// Errors of internal services as the public may see them: without internal addresses.

#include <grpcpp/support/status.h>

#include <string_view>

namespace padlock::runtime {

// True when `text` names a network endpoint: "ipv4:", "ipv6:" or "unix:" URIs, a dotted IPv4
// address, a bracketed IPv6 address, or host:port with a numeric port.
bool ContainsNetworkAddress(std::string_view text);

// A failed call to an internal service (`upstream`: "key-directory", "message-queue",
// "presence"), as a public caller may see it. The gRPC library's own failures name internal
// addresses ("failed to connect to all addresses; last error: UNKNOWN: ipv4:10.0.0.7:7420: …"),
// so for the codes it produces (UNAVAILABLE, DEADLINE_EXCEEDED, CANCELLED, UNKNOWN, INTERNAL,
// UNIMPLEMENTED, DATA_LOSS) the code is kept and the message replaced ("message-queue
// unavailable: retry with backoff"); other codes come from our own services and keep their
// message unless it names an address. The original status is logged at warn (rate-limited as
// every line). OK and error details pass unchanged.
grpc::Status PublicUpstreamStatus(std::string_view upstream, const grpc::Status& status);

}  // namespace padlock::runtime
