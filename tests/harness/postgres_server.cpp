#include "tests/harness/postgres_server.h"

#include <pwd.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <utility>

#include "absl/strings/str_cat.h"

namespace padlock::testing {
namespace {

constexpr char kBinDir[] = "/usr/lib/postgresql/15/bin";

absl::Status MakeDir(const std::string& path, uid_t uid, gid_t gid) {
  if (::mkdir(path.c_str(), 0700) != 0 && errno != EEXIST) {
    return absl::InternalError(absl::StrCat("mkdir ", path, ": ", std::strerror(errno)));
  }
  if (uid != 0 && ::chown(path.c_str(), uid, gid) != 0) {
    return absl::InternalError(absl::StrCat("chown ", path, ": ", std::strerror(errno)));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::unique_ptr<PostgresServer>> PostgresServer::Start(absl::Duration timeout) {
  std::unique_ptr<PostgresServer> server(new PostgresServer());
  const std::string initdb = FindProgram("initdb", {kBinDir});
  if (initdb.empty()) return absl::NotFoundError("initdb not found (PostgreSQL 15 installed?)");
  server->bin_dir_ = std::filesystem::path(initdb).parent_path().string();
  // PATH may hold another major version's wrappers; keep every tool from one directory.
  if (::access(absl::StrCat(kBinDir, "/postgres").c_str(), X_OK) == 0) server->bin_dir_ = kBinDir;

  if (::geteuid() == 0) {
    // PostgreSQL refuses to run as root: hand the server to the `postgres` system user.
    const passwd* pw = ::getpwnam("postgres");
    if (pw == nullptr) return absl::FailedPreconditionError("running as root but no postgres user");
    server->uid_ = pw->pw_uid;
    server->gid_ = pw->pw_gid;
  }
  server->data_dir_ = absl::StrCat(server->dir_.path(), "/data");
  server->socket_dir_ = absl::StrCat(server->dir_.path(), "/sock");
  server->log_path_ = absl::StrCat(server->dir_.path(), "/postgres.log");
  if (absl::Status s = MakeDir(server->data_dir_, server->uid_, server->gid_); !s.ok()) return s;
  if (absl::Status s = MakeDir(server->socket_dir_, server->uid_, server->gid_); !s.ok()) return s;
  server->port_ = FreeTcpPort();

  if (absl::Status s = server->InitDb(timeout); !s.ok()) return s;
  if (absl::Status s = server->Launch(timeout); !s.ok()) return s;
  return server;
}

PostgresServer::~PostgresServer() {
  // A graceful stop releases the shared memory that a SIGKILLed postmaster would leak.
  (void)Stop(absl::Seconds(10));
}

std::string PostgresServer::ConnInfo(const std::string& dbname) const {
  return absl::StrCat("host=127.0.0.1 port=", port_, " user=postgres dbname=", dbname);
}

absl::Status PostgresServer::RunTool(const std::string& tool, std::vector<std::string> args,
                                     absl::Duration timeout) {
  Subprocess::Options options;
  options.argv.push_back(absl::StrCat(bin_dir_, "/", tool));
  for (auto& a : args) options.argv.push_back(std::move(a));
  options.env["LC_ALL"] = "C";
  options.log_path = absl::StrCat(dir_.path(), "/", tool, ".log");
  if (tool == "initdb") {
    options.run_as_uid = uid_;
    options.run_as_gid = gid_;
  }
  absl::StatusOr<Subprocess> process = Subprocess::Start(std::move(options));
  if (!process.ok()) return process.status();
  absl::StatusOr<int> status = process->Wait(timeout);
  if (!status.ok()) {
    process->Kill();
    return absl::DeadlineExceededError(
        absl::StrCat(tool, " did not finish in ", absl::FormatDuration(timeout)));
  }
  if (!WIFEXITED(*status) || WEXITSTATUS(*status) != 0) {
    return absl::InternalError(
        absl::StrCat(tool, " failed (wait status ", *status, "): ", process->ReadLog()));
  }
  return absl::OkStatus();
}

absl::Status PostgresServer::InitDb(absl::Duration timeout) {
  return RunTool("initdb",
                 {"-D", data_dir_, "-U", "postgres", "-A", "trust", "-E", "UTF8", "--locale=C",
                  "--no-sync", "--no-instructions"},
                 timeout);
}

absl::Status PostgresServer::Launch(absl::Duration timeout) {
  Subprocess::Options options;
  options.argv = {absl::StrCat(bin_dir_, "/postgres"),
                  "-D",
                  data_dir_,
                  "-p",
                  absl::StrCat(port_),
                  "-k",
                  socket_dir_,
                  "-c",
                  "listen_addresses=127.0.0.1",
                  // Tests never survive a host crash: trade durability for speed.
                  "-c",
                  "fsync=off",
                  "-c",
                  "synchronous_commit=off",
                  "-c",
                  "full_page_writes=off",
                  "-c",
                  "max_connections=100",
                  "-c",
                  "shared_buffers=32MB"};
  options.env["LC_ALL"] = "C";
  options.log_path = log_path_;
  options.run_as_uid = uid_;
  options.run_as_gid = gid_;
  absl::StatusOr<Subprocess> process = Subprocess::Start(std::move(options));
  if (!process.ok()) return process.status();
  postmaster_.emplace(std::move(*process));

  // pg_isready exits 0 once the server accepts connections (1: rejecting, e.g. still starting).
  bool died = false;
  const bool ready = WaitFor(
      [&] {
        if (!postmaster_->running()) {
          died = true;
          return true;
        }
        return RunTool("pg_isready",
                       {"-h", "127.0.0.1", "-p", absl::StrCat(port_), "-U", "postgres", "-d",
                        "postgres", "-t", "1"},
                       absl::Seconds(5))
            .ok();
      },
      timeout);
  if (died || !ready) {
    postmaster_.reset();
    return absl::UnavailableError(absl::StrCat("postgres ", died ? "exited" : "not ready after ",
                                               died ? "" : absl::FormatDuration(timeout),
                                               "; log:\n", Log()));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> PostgresServer::CreateFreshDatabase() {
  std::string name = absl::StrCat("test_", ++next_database_);
  absl::Status s = RunTool(
      "createdb", {"-h", "127.0.0.1", "-p", absl::StrCat(port_), "-U", "postgres", name},
      absl::Seconds(30));
  if (!s.ok()) return s;
  return name;
}

absl::Status PostgresServer::Stop(absl::Duration timeout) {
  if (!postmaster_.has_value()) return absl::OkStatus();
  // SIGINT = fast shutdown: sessions are terminated, a checkpoint is written.
  absl::StatusOr<int> status = postmaster_->Stop(SIGINT, timeout);
  if (!status.ok()) {
    postmaster_.reset();  // SIGKILLs the process group
    return absl::DeadlineExceededError("postgres did not shut down in time; killed");
  }
  postmaster_.reset();
  return absl::OkStatus();
}

absl::Status PostgresServer::Restart(absl::Duration timeout) {
  if (running()) return absl::OkStatus();
  postmaster_.reset();
  return Launch(timeout);
}

bool PostgresServer::running() { return postmaster_.has_value() && postmaster_->running(); }

std::string PostgresServer::Log() const {
  std::string log;
  if (FILE* f = std::fopen(log_path_.c_str(), "r")) {
    char buf[4096];
    size_t n;
    while ((n = std::fread(buf, 1, sizeof(buf), f)) > 0) log.append(buf, n);
    std::fclose(f);
  }
  return log;
}

}  // namespace padlock::testing
