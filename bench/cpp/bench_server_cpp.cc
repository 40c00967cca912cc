// bench_server_cpp: the bench.Echo service (proto/bench.proto) written with
// gRPC C++ 1.51, as the reference peer for the piperpc benchmark.
//
//   bench_server_cpp --listen ADDR [--listen ADDR ...] [--threads N]
//                    [--api sync|callback]
//
// ADDR is a gRPC address (unix:/path, unix-abstract:name, 127.0.0.1:0, ...)
// or fd:N, an inherited connected socket adopted with
// grpc::AddInsecureChannelFromFd once the server is running (after setting
// O_NONBLOCK on it: gRPC 1.51 does not, and with a blocking socket the
// connection's calls hang). One fd is one HTTP/2 connection, usable by one
// client for its lifetime.
//
// --api sync (default) implements Echo::Service (one handler thread per
// active RPC, taken from gRPC's sync-server thread manager).
// --api callback implements Echo::CallbackService with reactors (handlers
// run on gRPC's internal callback executor).
//
// --threads N (sync API only): gRPC's sync server has no fixed-size pool.
// Its thread manager keeps between MIN_POLLERS (default 1) and MAX_POLLERS
// (default 2) threads polling the server completion queue (NUM_CQS, default
// 1); a poller that takes an RPC runs its handler, and a new poller thread is
// started if fewer than MIN_POLLERS are left; on return a thread exits if more
// than MAX_POLLERS are polling. So there is one thread per concurrently
// running handler plus up to MAX_POLLERS idle ones. --threads N sets
// SetSyncServerOption(MAX_POLLERS, N) and leaves MIN_POLLERS at 1 and NUM_CQS
// at 1; without --threads the gRPC defaults are kept (= --threads 2).
// Not used, on purpose (measured on this project's unary cell, 32 in flight):
//   * ResourceQuota::SetMaxThreads(N): when the quota is reached gRPC fails
//     new RPCs with RESOURCE_EXHAUSTED "Server Threadpool Exhausted" instead
//     of queueing them (it did so even with N = 32);
//   * MIN_POLLERS = MAX_POLLERS = N: every RPC then starts and ends a thread
//     (3x to 8x fewer calls/s with 0-byte payloads). Note that --threads 1
//     is exactly that case (MIN_POLLERS 1 = MAX_POLLERS 1).
// The callback API has no thread knob in gRPC 1.51; --threads is accepted and
// ignored there (with a note on stderr).
//
// Prints "bench_server_cpp: listening on ADDR (port N)" (TCP) or
// "bench_server_cpp: listening on ADDR" (unix, fd) for every --listen, then
// "bench_server_cpp: ready". SIGTERM or SIGINT: Shutdown (in-flight calls
// get one second, then are cancelled), exit 0.

#include <grpcpp/grpcpp.h>
#include <grpcpp/server_posix.h>

#include <fcntl.h>
#include <pthread.h>
#include <signal.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "bench.grpc.pb.h"

namespace {

using bench::Echo;
using bench::Payload;
using bench::StreamRequest;
using grpc::ServerContext;
using grpc::Status;
using grpc::StatusCode;

const char kProg[] = "bench_server_cpp";

Status CheckStreamRequest(const StreamRequest& r) {
  if (r.count() < 0 || r.size() < 0)
    return Status(StatusCode::INVALID_ARGUMENT, "count and size must be >= 0");
  return Status::OK;
}

// ---- synchronous API ----

class SyncEcho final : public Echo::Service {
  Status Unary(ServerContext*, const Payload* req, Payload* resp) override {
    *resp->mutable_data() = req->data();
    return Status::OK;
  }

  Status ServerStream(ServerContext* ctx, const StreamRequest* req,
                      grpc::ServerWriter<Payload>* writer) override {
    Status st = CheckStreamRequest(*req);
    if (!st.ok())
      return st;
    Payload msg;
    msg.mutable_data()->assign(static_cast<size_t>(req->size()), 'x');
    for (int32_t i = 0; i < req->count(); i++) {
      // Write blocks on flow control and fails once the call is cancelled.
      if (ctx->IsCancelled() || !writer->Write(msg))
        return Status(StatusCode::CANCELLED, "cancelled");
    }
    return Status::OK;
  }

  Status ClientStream(ServerContext*, grpc::ServerReader<Payload>* reader,
                      Payload* resp) override {
    Payload msg;
    unsigned long long total = 0;
    while (reader->Read(&msg))
      total += msg.data().size();
    resp->set_data(std::to_string(total));
    return Status::OK;
  }

  Status Bidi(ServerContext*,
              grpc::ServerReaderWriter<Payload, Payload>* stream) override {
    Payload msg;
    while (stream->Read(&msg)) {
      if (!stream->Write(msg))
        return Status(StatusCode::CANCELLED, "cancelled");
    }
    return Status::OK;
  }
};

// ---- callback API ----

class StreamWriter final : public grpc::ServerWriteReactor<Payload> {
 public:
  explicit StreamWriter(const StreamRequest* req) {
    Status st = CheckStreamRequest(*req);
    if (!st.ok()) {
      Finish(st);
      return;
    }
    remaining_ = req->count();
    msg_.mutable_data()->assign(static_cast<size_t>(req->size()), 'x');
    Next();
  }

 private:
  void Next() {
    if (remaining_ > 0) {
      remaining_--;
      StartWrite(&msg_);
    } else {
      Finish(Status::OK);
    }
  }
  void OnWriteDone(bool ok) override {
    if (!ok) {  // cancelled (or the connection went away)
      Finish(Status(StatusCode::CANCELLED, "cancelled"));
      return;
    }
    Next();
  }
  void OnDone() override { delete this; }

  Payload msg_;
  int32_t remaining_ = 0;
};

class StreamSummer final : public grpc::ServerReadReactor<Payload> {
 public:
  explicit StreamSummer(Payload* resp) : resp_(resp) { StartRead(&msg_); }

 private:
  void OnReadDone(bool ok) override {
    if (ok) {
      total_ += msg_.data().size();
      StartRead(&msg_);
      return;
    }
    // Half-close (or cancellation, in which case the status is not sent).
    resp_->set_data(std::to_string(total_));
    Finish(Status::OK);
  }
  void OnDone() override { delete this; }

  Payload* resp_;
  Payload msg_;
  unsigned long long total_ = 0;
};

class BidiEchoer final : public grpc::ServerBidiReactor<Payload, Payload> {
 public:
  BidiEchoer() { StartRead(&msg_); }

 private:
  void OnReadDone(bool ok) override {
    if (ok)
      StartWrite(&msg_);
    else
      Finish(Status::OK);  // half-close
  }
  void OnWriteDone(bool ok) override {
    if (ok)
      StartRead(&msg_);
    else
      Finish(Status(StatusCode::CANCELLED, "cancelled"));
  }
  void OnDone() override { delete this; }

  Payload msg_;
};

class CallbackEcho final : public Echo::CallbackService {
  grpc::ServerUnaryReactor* Unary(grpc::CallbackServerContext* ctx,
                                  const Payload* req, Payload* resp) override {
    *resp->mutable_data() = req->data();
    grpc::ServerUnaryReactor* r = ctx->DefaultReactor();
    r->Finish(Status::OK);
    return r;
  }
  grpc::ServerWriteReactor<Payload>* ServerStream(
      grpc::CallbackServerContext*, const StreamRequest* req) override {
    return new StreamWriter(req);
  }
  grpc::ServerReadReactor<Payload>* ClientStream(
      grpc::CallbackServerContext*, Payload* resp) override {
    return new StreamSummer(resp);
  }
  grpc::ServerBidiReactor<Payload, Payload>* Bidi(
      grpc::CallbackServerContext*) override {
    return new BidiEchoer();
  }
};

// ---- main ----

[[noreturn]] void Usage() {
  std::fprintf(stderr,
               "usage: %s --listen ADDR [--listen ADDR ...] [--threads N] "
               "[--api sync|callback]\n"
               "  ADDR: unix:/path, unix-abstract:name, HOST:PORT, or fd:N "
               "(an inherited connected socket)\n",
               kProg);
  std::exit(2);
}

bool ParseInt(const char* s, long lo, long hi, long* out) {
  char* end = nullptr;
  errno = 0;
  long v = std::strtol(s, &end, 10);
  if (errno || end == s || *end || v < lo || v > hi)
    return false;
  *out = v;
  return true;
}

bool IsUnixAddress(const std::string& a) {
  return a.rfind("unix:", 0) == 0 || a.rfind("unix-abstract:", 0) == 0;
}

struct Listen {
  std::string addr;
  int fd = -1;    // for fd:N
  int port = 0;   // selected port otherwise
};

}  // namespace

int main(int argc, char** argv) {
  std::vector<Listen> listens;
  long threads = 0;
  bool callback = false;
  for (int i = 1; i < argc; i++) {
    std::string a = argv[i];
    if (a == "--listen" && i + 1 < argc) {
      Listen l;
      l.addr = argv[++i];
      if (l.addr.rfind("fd:", 0) == 0) {
        long fd;
        if (!ParseInt(l.addr.c_str() + 3, 0, 1 << 20, &fd)) {
          std::fprintf(stderr, "%s: bad fd address %s\n", kProg,
                       l.addr.c_str());
          return 2;
        }
        l.fd = static_cast<int>(fd);
      }
      listens.push_back(l);
    } else if (a == "--threads" && i + 1 < argc) {
      if (!ParseInt(argv[++i], 1, 4096, &threads))
        Usage();
    } else if (a == "--api" && i + 1 < argc) {
      std::string v = argv[++i];
      if (v == "sync")
        callback = false;
      else if (v == "callback")
        callback = true;
      else
        Usage();
    } else {
      Usage();
    }
  }
  if (listens.empty())
    Usage();

  // Block the stop signals before gRPC starts any thread, so that every
  // thread inherits the mask and only sigwait() below sees them.
  sigset_t stop;
  sigemptyset(&stop);
  sigaddset(&stop, SIGTERM);
  sigaddset(&stop, SIGINT);
  pthread_sigmask(SIG_BLOCK, &stop, nullptr);
  signal(SIGPIPE, SIG_IGN);

  SyncEcho sync_service;
  CallbackEcho callback_service;
  grpc::ServerBuilder builder;
  if (callback)
    builder.RegisterService(&callback_service);
  else
    builder.RegisterService(&sync_service);
  builder.SetMaxReceiveMessageSize(-1);
  builder.SetMaxSendMessageSize(-1);
  if (threads > 0) {
    if (callback) {
      std::fprintf(stderr, "%s: --threads has no effect with --api callback\n",
                   kProg);
    } else {
      // See the comment at the top: only the number of idle polling
      // threads kept is set; MIN_POLLERS stays at gRPC's default of 1.
      builder.SetSyncServerOption(grpc::ServerBuilder::MAX_POLLERS,
                                  static_cast<int>(threads));
    }
  }
  for (auto& l : listens) {
    if (l.fd < 0)
      builder.AddListeningPort(l.addr, grpc::InsecureServerCredentials(),
                               &l.port);
  }
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (!server) {
    std::fprintf(stderr, "%s: could not start the server\n", kProg);
    return 1;
  }
  for (auto& l : listens) {
    if (l.fd >= 0) {
      // gRPC's endpoint code needs a non-blocking socket; unlike
      // CreateInsecureChannelFromFd on the client side,
      // AddInsecureChannelFromFd does not set O_NONBLOCK itself.
      int flags = fcntl(l.fd, F_GETFL);
      if (flags < 0 || fcntl(l.fd, F_SETFL, flags | O_NONBLOCK) < 0) {
        std::fprintf(stderr, "%s: %s: %s\n", kProg, l.addr.c_str(),
                     std::strerror(errno));
        server->Shutdown();
        return 1;
      }
      grpc::AddInsecureChannelFromFd(server.get(), l.fd);
      std::printf("%s: listening on %s\n", kProg, l.addr.c_str());
    } else if (l.port == 0) {
      std::fprintf(stderr, "%s: could not listen on %s\n", kProg,
                   l.addr.c_str());
      server->Shutdown();
      return 1;
    } else if (IsUnixAddress(l.addr)) {
      std::printf("%s: listening on %s\n", kProg, l.addr.c_str());
    } else {
      std::printf("%s: listening on %s (port %d)\n", kProg, l.addr.c_str(),
                  l.port);
    }
  }
  std::printf("%s: ready\n", kProg);
  std::fflush(stdout);

  int sig = 0;
  while (sigwait(&stop, &sig) != 0) {
  }
  server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(1));
  server->Wait();
  return 0;
}
