// A gRPC echo server for the HTTP/2 benchmarks (bench/h2.py): every call,
// whatever its method, answers the request message it received, with
// status OK. It uses grpc++'s generic async API (no generated code): one
// completion queue and one thread per --threads, each with a few hundred
// calls requested ahead, so that its threads are never what waits. (On a
// machine with cores to spare it outruns one proxy worker; sharing one core
// with the load generator on 2 cores it does not: bench/RESULTS-h2.md.)
//
//   weft_grpc_echo_server [--port N] [--threads N] [--delay-ms N]
//
// --delay-ms holds each answer that long (an alarm, no thread waits): a
// slow instance for bench/resilience.py.
// Prints `listening 127.0.0.1:PORT` once it serves.
#include <grpcpp/alarm.h>
#include <grpcpp/generic/async_generic_service.h>
#include <grpcpp/grpcpp.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <thread>
#include <vector>

namespace {

int g_delay_ms = 0;

class Call {
 public:
  Call(grpc::AsyncGenericService* svc, grpc::ServerCompletionQueue* cq)
      : svc_(svc), cq_(cq), stream_(&ctx_) {
    svc_->RequestCall(&ctx_, &stream_, cq_, cq_, this);
  }

  // One step of the call: requested -> read -> written and finished.
  void Proceed(bool ok) {
    switch (state_) {
      case State::kRequested:
        if (!ok) {  // the queue is shutting down
          delete this;
          return;
        }
        new Call(svc_, cq_);  // keep the same number of calls requested
        state_ = State::kReading;
        stream_.Read(&buf_, this);
        return;
      case State::kReading:
        read_ok_ = ok;
        if (g_delay_ms > 0) {
          state_ = State::kDelayed;
          alarm_.Set(cq_, std::chrono::system_clock::now() + std::chrono::milliseconds(g_delay_ms),
                     this);
          return;
        }
        [[fallthrough]];
      case State::kDelayed:
        state_ = State::kFinishing;
        if (!read_ok_) {  // no message: finish without one
          stream_.Finish(grpc::Status::OK, this);
          return;
        }
        stream_.WriteAndFinish(buf_, grpc::WriteOptions(), grpc::Status::OK, this);
        return;
      case State::kFinishing:
        delete this;
        return;
    }
  }

 private:
  enum class State { kRequested, kReading, kDelayed, kFinishing };
  grpc::AsyncGenericService* svc_;
  grpc::ServerCompletionQueue* cq_;
  grpc::GenericServerContext ctx_;
  grpc::GenericServerAsyncReaderWriter stream_;
  grpc::ByteBuffer buf_;
  State state_ = State::kRequested;
  bool read_ok_ = false;
  grpc::Alarm alarm_;
};

}  // namespace

int main(int argc, char** argv) {
  int port = 0, threads = 4;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (!std::strcmp(argv[i], "--port"))
      port = std::atoi(argv[i + 1]);
    else if (!std::strcmp(argv[i], "--threads"))
      threads = std::atoi(argv[i + 1]);
    else if (!std::strcmp(argv[i], "--delay-ms"))
      g_delay_ms = std::atoi(argv[i + 1]);
    else {
      std::fprintf(stderr, "usage: %s [--port N] [--threads N] [--delay-ms N]\n", argv[0]);
      return 2;
    }
  }
  grpc::AsyncGenericService svc;
  grpc::ServerBuilder b;
  int bound = 0;
  b.AddListeningPort("127.0.0.1:" + std::to_string(port), grpc::InsecureServerCredentials(),
                     &bound);
  b.RegisterAsyncGenericService(&svc);
  b.SetMaxReceiveMessageSize(64 << 20);
  std::vector<std::unique_ptr<grpc::ServerCompletionQueue>> cqs;
  for (int i = 0; i < threads; ++i) cqs.push_back(b.AddCompletionQueue());
  std::unique_ptr<grpc::Server> server = b.BuildAndStart();
  if (!server || !bound) {
    std::fprintf(stderr, "could not listen on 127.0.0.1:%d\n", port);
    return 1;
  }
  std::printf("listening 127.0.0.1:%d\n", bound);
  std::fflush(stdout);
  std::vector<std::thread> pool;
  for (auto& cq : cqs) {
    pool.emplace_back([&svc, q = cq.get()] {
      for (int i = 0; i < 256; ++i) new Call(&svc, q);
      void* tag;
      bool ok;
      while (q->Next(&tag, &ok)) static_cast<Call*>(tag)->Proceed(ok);
    });
  }
  for (auto& t : pool) t.join();
  return 0;
}
