// bench_client_cpp: the gRPC C++ 1.51 benchmark client for bench.Echo
// (proto/bench.proto), following bench/PROTOCOL.md:
//
//   bench_client_cpp --target T --cell unary|pingpong|server_stream|client_stream
//                    --size BYTES [--inflight N] [--warmup S] [--duration S]
//                    [--client-api auto|sync|async|callback]
//
// T is a gRPC target (unix:/path, unix-abstract:name, HOST:PORT) or fd:N, an
// inherited connected socket (grpc::CreateCustomInsecureChannelFromFd). One
// channel, hence one HTTP/2 connection, is used for everything.
//
// Cells:
//   unary          Echo.Unary calls of --size bytes, --inflight at once.
//                  --client-api (not part of PROTOCOL.md; default auto):
//                    auto     = sync for --inflight 1, async otherwise
//                    sync     = --inflight threads each making blocking calls
//                    async    = one thread driving a CompletionQueue that
//                               always has --inflight calls outstanding
//                    callback = stub->async()->Unary with --inflight calls
//                               outstanding, re-issued from the callbacks
//   pingpong       Write + Read of one --size message on one Echo.Bidi stream
//                  (sync ClientReaderWriter).
//   server_stream  one message received on Echo.ServerStream (count INT32_MAX;
//                  the client cancels at the end); latency = time between
//                  consecutive messages (sync ClientReader).
//   client_stream  one message sent on Echo.ClientStream (latency = time
//                  between consecutive Write() returns); at the end the client
//                  half-closes and checks the server's byte count
//                  (sync ClientWriter).
// --inflight only applies to unary.
//
// The warmup/window timing is driven by the main thread (sleep_until); the
// worker(s) record an operation in the window if it completed while the
// window was open. p50/p99 are exact nearest-rank percentiles (sorted[ceil(p*n)
// - 1]) over every latency sample of the window. cpu_* come from
// getrusage(RUSAGE_SELF) (all threads, gRPC's own included) at the window's
// start and end.

#include <grpcpp/create_channel_posix.h>
#include <grpcpp/grpcpp.h>

#include <signal.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <climits>
#include <cmath>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "bench.grpc.pb.h"

namespace {

using bench::Echo;
using bench::Payload;
using bench::StreamRequest;
using Clock = std::chrono::steady_clock;

const char kProg[] = "bench_client_cpp";

enum Phase { kWarmup, kWindow, kDone };
std::atomic<int> g_phase{kWarmup};

struct Options {
  std::string target;
  std::string cell;
  long size = -1;
  long inflight = 1;
  double warmup = 1.0;
  double duration = 3.0;
  std::string client_api = "auto";
};

[[noreturn]] void Fail(const std::string& msg) {
  std::fprintf(stderr, "%s: %s\n", kProg, msg.c_str());
  std::fflush(stderr);
  std::fflush(stdout);
  _exit(1);  // may be called from any thread, with gRPC threads running
}

[[noreturn]] void FailStatus(const char* what, const grpc::Status& s) {
  Fail(std::string(what) + " failed: code " +
       std::to_string(static_cast<int>(s.error_code())) + ": " +
       s.error_message());
}

inline double Us(Clock::duration d) {
  return std::chrono::duration<double, std::micro>(d).count();
}

// Latency samples of one worker thread.
struct Samples {
  std::vector<double> us;
  Samples() { us.reserve(1 << 20); }
  // Called when an operation completed; returns false once the window closed.
  bool Add(double lat_us) {
    int ph = g_phase.load(std::memory_order_acquire);
    if (ph == kWindow)
      us.push_back(lat_us);
    return ph != kDone;
  }
};

std::string Size(const Payload& p) { return std::to_string(p.data().size()); }

void CheckEcho(const Payload& resp, long size, const char* what) {
  if (static_cast<long>(resp.data().size()) != size)
    Fail(std::string(what) + ": got " + Size(resp) + " bytes, expected " +
         std::to_string(size));
}

// ---- unary ----

void UnarySyncWorker(Echo::Stub* stub, const Payload& req, long size,
                     Samples* s) {
  Payload resp;
  for (;;) {
    grpc::ClientContext ctx;
    Clock::time_point t0 = Clock::now();
    grpc::Status st = stub->Unary(&ctx, req, &resp);
    Clock::time_point t1 = Clock::now();
    if (!st.ok())
      FailStatus("Unary", st);
    CheckEcho(resp, size, "Unary");
    if (!s->Add(Us(t1 - t0)))
      return;
  }
}

struct AsyncCall {
  std::unique_ptr<grpc::ClientContext> ctx;
  std::unique_ptr<grpc::ClientAsyncResponseReader<Payload>> rpc;
  Payload resp;
  grpc::Status st;
  Clock::time_point t0;
};

void UnaryAsyncWorker(Echo::Stub* stub, const Payload& req, long size,
                      long inflight, Samples* s) {
  grpc::CompletionQueue cq;
  std::vector<AsyncCall> calls(static_cast<size_t>(inflight));
  auto start = [&](AsyncCall* c) {
    c->ctx.reset(new grpc::ClientContext);
    c->t0 = Clock::now();
    c->rpc = stub->AsyncUnary(c->ctx.get(), req, &cq);
    c->rpc->Finish(&c->resp, &c->st, c);
  };
  for (auto& c : calls)
    start(&c);
  long outstanding = inflight;
  bool stopping = false;
  while (outstanding > 0) {
    void* tag = nullptr;
    bool ok = false;
    if (!cq.Next(&tag, &ok))
      Fail("completion queue shut down unexpectedly");
    Clock::time_point t1 = Clock::now();
    auto* c = static_cast<AsyncCall*>(tag);
    outstanding--;
    if (!ok || !c->st.ok())
      FailStatus("Unary", c->st);
    CheckEcho(c->resp, size, "Unary");
    if (!s->Add(Us(t1 - c->t0)))
      stopping = true;
    if (!stopping) {
      start(c);
      outstanding++;
    }
  }
  cq.Shutdown();
  void* tag;
  bool ok;
  while (cq.Next(&tag, &ok)) {
  }
}

struct CallbackUnary {
  Echo::Stub* stub;
  const Payload* req;
  long size;
  std::mutex mu;
  std::condition_variable cv;
  long outstanding = 0;
  Samples samples;

  struct Call {
    CallbackUnary* owner;
    std::unique_ptr<grpc::ClientContext> ctx;
    Payload resp;
    Clock::time_point t0;
  };
  std::vector<Call> calls;

  void Start(Call* c) {
    c->ctx.reset(new grpc::ClientContext);
    c->t0 = Clock::now();
    stub->async()->Unary(c->ctx.get(), req, &c->resp,
                         [c](grpc::Status st) { c->owner->Done(c, st); });
  }
  void Done(Call* c, const grpc::Status& st) {
    Clock::time_point t1 = Clock::now();
    if (!st.ok())
      FailStatus("Unary", st);
    CheckEcho(c->resp, size, "Unary");
    bool again;
    {
      std::lock_guard<std::mutex> lock(mu);
      again = samples.Add(Us(t1 - c->t0));
      if (!again && --outstanding == 0)
        cv.notify_all();
    }
    if (again)
      Start(c);
  }
  void Run(long inflight) {
    calls.resize(static_cast<size_t>(inflight));
    outstanding = inflight;
    for (auto& c : calls) {
      c.owner = this;
      Start(&c);
    }
    std::unique_lock<std::mutex> lock(mu);
    cv.wait(lock, [this] { return outstanding == 0; });
  }
};

// ---- streaming cells ----

void PingpongWorker(Echo::Stub* stub, const Payload& req, long size,
                    Samples* s) {
  grpc::ClientContext ctx;
  auto stream = stub->Bidi(&ctx);
  Payload resp;
  for (;;) {
    Clock::time_point t0 = Clock::now();
    if (!stream->Write(req))
      FailStatus("Bidi write", stream->Finish());
    if (!stream->Read(&resp))
      FailStatus("Bidi read", stream->Finish());
    Clock::time_point t1 = Clock::now();
    CheckEcho(resp, size, "Bidi");
    if (!s->Add(Us(t1 - t0)))
      break;
  }
  if (!stream->WritesDone())
    FailStatus("Bidi half-close", stream->Finish());
  if (stream->Read(&resp))
    Fail("Bidi: unexpected message after half-close");
  grpc::Status st = stream->Finish();
  if (!st.ok())
    FailStatus("Bidi", st);
}

void ServerStreamWorker(Echo::Stub* stub, long size, Samples* s) {
  grpc::ClientContext ctx;
  StreamRequest r;
  r.set_count(INT32_MAX);
  r.set_size(static_cast<int32_t>(size));
  auto reader = stub->ServerStream(&ctx, r);
  Payload msg;
  Clock::time_point prev = Clock::now();
  for (;;) {
    if (!reader->Read(&msg))
      FailStatus("ServerStream ended early; status", reader->Finish());
    Clock::time_point t = Clock::now();
    CheckEcho(msg, size, "ServerStream");
    bool more = s->Add(Us(t - prev));
    prev = t;
    if (!more)
      break;
  }
  ctx.TryCancel();
  while (reader->Read(&msg)) {
  }
  grpc::Status st = reader->Finish();
  if (!st.ok() && st.error_code() != grpc::StatusCode::CANCELLED)
    FailStatus("ServerStream", st);
}

void ClientStreamWorker(Echo::Stub* stub, const Payload& req, long size,
                        Samples* s) {
  grpc::ClientContext ctx;
  Payload resp;
  auto writer = stub->ClientStream(&ctx, &resp);
  unsigned long long total = 0;
  Clock::time_point prev = Clock::now();
  for (;;) {
    if (!writer->Write(req))
      FailStatus("ClientStream write", writer->Finish());
    Clock::time_point t = Clock::now();
    total += static_cast<unsigned long long>(size);
    bool more = s->Add(Us(t - prev));
    prev = t;
    if (!more)
      break;
  }
  if (!writer->WritesDone())
    FailStatus("ClientStream half-close", writer->Finish());
  grpc::Status st = writer->Finish();
  if (!st.ok())
    FailStatus("ClientStream", st);
  if (resp.data() != std::to_string(total))
    Fail("ClientStream: server counted " + resp.data() + " bytes, sent " +
         std::to_string(total));
}

// ---- main ----

[[noreturn]] void Usage() {
  std::fprintf(
      stderr,
      "usage: %s --target T --cell unary|pingpong|server_stream|client_stream\n"
      "       --size BYTES [--inflight N] [--warmup S] [--duration S]\n"
      "       [--client-api auto|sync|async|callback]\n",
      kProg);
  std::exit(2);
}

bool ParseLong(const char* s, long lo, long hi, long* out) {
  char* end = nullptr;
  errno = 0;
  long v = std::strtol(s, &end, 10);
  if (errno || end == s || *end || v < lo || v > hi)
    return false;
  *out = v;
  return true;
}

bool ParseSeconds(const char* s, double* out) {
  char* end = nullptr;
  errno = 0;
  double v = std::strtod(s, &end);
  if (errno || end == s || *end || !(v >= 0) || v > 1e6)
    return false;
  *out = v;
  return true;
}

double Seconds(const timeval& tv) { return tv.tv_sec + tv.tv_usec / 1e6; }

double Percentile(const std::vector<double>& sorted, double p) {
  if (sorted.empty())
    return 0;
  size_t n = sorted.size();
  size_t rank = static_cast<size_t>(std::ceil(p / 100.0 * n));
  if (rank < 1)
    rank = 1;
  return sorted[std::min(rank, n) - 1];
}

Options ParseArgs(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; i++) {
    std::string a = argv[i];
    const char* v = i + 1 < argc ? argv[i + 1] : nullptr;
    if (!v)
      Usage();
    i++;
    if (a == "--target") {
      o.target = v;
    } else if (a == "--cell") {
      o.cell = v;
    } else if (a == "--size") {
      if (!ParseLong(v, 0, INT32_MAX, &o.size))
        Usage();
    } else if (a == "--inflight") {
      if (!ParseLong(v, 1, 100000, &o.inflight))
        Usage();
    } else if (a == "--warmup") {
      if (!ParseSeconds(v, &o.warmup))
        Usage();
    } else if (a == "--duration") {
      if (!ParseSeconds(v, &o.duration) || o.duration <= 0)
        Usage();
    } else if (a == "--client-api") {
      o.client_api = v;
    } else {
      Usage();
    }
  }
  if (o.target.empty() || o.size < 0)
    Usage();
  if (o.cell != "unary" && o.cell != "pingpong" && o.cell != "server_stream" &&
      o.cell != "client_stream")
    Usage();
  if (o.client_api != "auto" && o.client_api != "sync" &&
      o.client_api != "async" && o.client_api != "callback")
    Usage();
  return o;
}

}  // namespace

int main(int argc, char** argv) {
  Options o = ParseArgs(argc, argv);
  signal(SIGPIPE, SIG_IGN);

  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(-1);
  args.SetMaxSendMessageSize(-1);
  std::shared_ptr<grpc::Channel> channel;
  if (o.target.rfind("fd:", 0) == 0) {
    long fd;
    if (!ParseLong(o.target.c_str() + 3, 0, INT_MAX, &fd))
      Fail("bad fd target " + o.target);
    channel = grpc::CreateCustomInsecureChannelFromFd(o.target,
                                                      static_cast<int>(fd),
                                                      args);
  } else {
    channel =
        grpc::CreateCustomChannel(o.target, grpc::InsecureChannelCredentials(),
                                  args);
    if (!channel->WaitForConnected(std::chrono::system_clock::now() +
                                   std::chrono::seconds(10)))
      Fail("could not connect to " + o.target);
  }
  std::unique_ptr<Echo::Stub> stub = Echo::NewStub(channel);
  Echo::Stub* st = stub.get();

  Payload req;
  req.mutable_data()->assign(static_cast<size_t>(o.size), 'x');

  // Start the worker(s); they run until g_phase becomes kDone.
  std::vector<Samples> samples;
  std::vector<std::thread> workers;
  std::unique_ptr<CallbackUnary> cb;
  const long size = o.size;
  if (o.cell == "unary") {
    std::string api = o.client_api;
    if (api == "auto")
      api = o.inflight == 1 ? "sync" : "async";
    if (api == "sync") {
      samples.resize(static_cast<size_t>(o.inflight));
      for (long i = 0; i < o.inflight; i++) {
        Samples* s = &samples[static_cast<size_t>(i)];
        workers.emplace_back(
            [st, &req, size, s] { UnarySyncWorker(st, req, size, s); });
      }
    } else if (api == "async") {
      samples.resize(1);
      Samples* s = &samples[0];
      long n = o.inflight;
      workers.emplace_back(
          [st, &req, size, n, s] { UnaryAsyncWorker(st, req, size, n, s); });
    } else {
      cb.reset(new CallbackUnary);
      cb->stub = st;
      cb->req = &req;
      cb->size = size;
      CallbackUnary* c = cb.get();
      long n = o.inflight;
      workers.emplace_back([c, n] { c->Run(n); });
    }
  } else {
    samples.resize(1);
    Samples* s = &samples[0];
    if (o.cell == "pingpong")
      workers.emplace_back([st, &req, size, s] {
        PingpongWorker(st, req, size, s);
      });
    else if (o.cell == "server_stream")
      workers.emplace_back([st, size, s] { ServerStreamWorker(st, size, s); });
    else
      workers.emplace_back([st, &req, size, s] {
        ClientStreamWorker(st, req, size, s);
      });
  }

  auto dur = [](double sec) {
    return std::chrono::duration_cast<Clock::duration>(
        std::chrono::duration<double>(sec));
  };
  std::this_thread::sleep_until(Clock::now() + dur(o.warmup));
  rusage ru0, ru1;
  getrusage(RUSAGE_SELF, &ru0);
  Clock::time_point w0 = Clock::now();
  g_phase.store(kWindow, std::memory_order_release);
  std::fputs("WINDOW_START\n", stdout);
  std::fflush(stdout);
  std::this_thread::sleep_until(w0 + dur(o.duration));
  g_phase.store(kDone, std::memory_order_release);
  Clock::time_point w1 = Clock::now();
  getrusage(RUSAGE_SELF, &ru1);
  std::fputs("WINDOW_END\n", stdout);
  std::fflush(stdout);

  for (auto& t : workers)
    t.join();
  std::vector<double> all;
  if (cb)
    all.swap(cb->samples.us);
  for (auto& s : samples)
    all.insert(all.end(), s.us.begin(), s.us.end());
  std::sort(all.begin(), all.end());

  std::printf(
      "{\"ops\": %zu, \"seconds\": %.6f, \"p50_us\": %.3f, \"p99_us\": %.3f, "
      "\"cpu_user_s\": %.6f, \"cpu_sys_s\": %.6f}\n",
      all.size(), std::chrono::duration<double>(w1 - w0).count(),
      Percentile(all, 50), Percentile(all, 99),
      Seconds(ru1.ru_utime) - Seconds(ru0.ru_utime),
      Seconds(ru1.ru_stime) - Seconds(ru0.ru_stime));
  std::fflush(stdout);
  return 0;
}
