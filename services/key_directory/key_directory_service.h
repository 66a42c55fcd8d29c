#pragma once
// The gRPC face of the key-directory service: validates requests, converts proto ↔ domain types,
// calls the logic and maps absl::Status to grpc::Status (services/common/runtime/status.h).

#include "padlock/v1/key_directory.grpc.pb.h"

namespace padlock::key_directory {

// padlock.v1.KeyDirectory: every rpc answers UNIMPLEMENTED until the key-directory issue (#3) fills
// it in — never a fake success. The class exists so that main() registers the real service name, so
// health, reflection and metrics already cover it. Thread-safe (stateless).
class KeyDirectoryService final : public padlock::v1::KeyDirectory::CallbackService {};

// padlock.v1.KeyDirectoryAdmin: every rpc answers UNIMPLEMENTED until the key-directory issue (#3)
// fills it in — never a fake success. The class exists so that main() registers the real service
// name, so health, reflection and metrics already cover it. Thread-safe (stateless).
class KeyDirectoryAdminService final : public padlock::v1::KeyDirectoryAdmin::CallbackService {};

}  // namespace padlock::key_directory
