// Shared by the transformer-engine bindings (llm_model.cpp: NativeLlmModel; llm_train.cpp:
// NativeLoraAdapter, NativeLoraTrainer, NativeModelTrainer).
//
// Concurrency: a Model and a LoraAdapter each live in a holder with a RwLock (below).
// Inference, accumulate(), clone/merge and reads of the params take shared locks; the optimizer
// step of a trainer and LoraAdapter.setParams take the exclusive lock. Heavy calls take their
// locks inside the PromiseWorker's Execute (worker thread). The few calls that lock on the JS
// thread take only `urgent` shared locks (getParams, save, clone of an adapter; save of a
// model), which wait only for an active exclusive holder, i.e. the short AdamW update of a
// step or the memcpy of setParams, never for a forward pass. Lock order, everywhere:
//   trainer mutex -> model lock -> adapter lock.
// Workers capture the holders by shared_ptr, so a model or adapter outlives every call in flight
// even when its JS object is collected.
#pragma once
#include <napi.h>

#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <shared_mutex>  // std::shared_lock
#include <string>
#include <vector>

#include "memq/llm/lora.h"
#include "memq/llm/model.h"
#include "util.h"

namespace memq_addon {

// A writer-preferring shared lock: once a writer (an optimizer step, setParams) waits, new
// shared lockers on worker threads queue behind it, so a steady stream of inference calls
// cannot starve a step (std::shared_mutex on glibc prefers readers). lock_shared_urgent() (JS
// thread only) skips the queue and waits only for an active writer. Usable with
// std::shared_lock / std::unique_lock.
class RwLock {
 public:
  void lock_shared() {
    std::unique_lock<std::mutex> l(m_);
    cv_.wait(l, [&] { return !writer_ && waiting_writers_ == 0; });
    ++readers_;
  }
  void lock_shared_urgent() {
    std::unique_lock<std::mutex> l(m_);
    cv_.wait(l, [&] { return !writer_; });
    ++readers_;
  }
  void unlock_shared() {
    std::lock_guard<std::mutex> l(m_);
    if (--readers_ == 0) cv_.notify_all();
  }
  void lock() {
    std::unique_lock<std::mutex> l(m_);
    ++waiting_writers_;
    cv_.wait(l, [&] { return !writer_ && readers_ == 0; });
    --waiting_writers_;
    writer_ = true;
  }
  void unlock() {
    std::lock_guard<std::mutex> l(m_);
    writer_ = false;
    cv_.notify_all();
  }

 private:
  std::mutex m_;
  std::condition_variable cv_;
  int64_t readers_ = 0, waiting_writers_ = 0;
  bool writer_ = false;
};

// RAII lock_shared_urgent (JS thread).
class UrgentSharedLock {
 public:
  explicit UrgentSharedLock(RwLock& l) : l_(l) { l_.lock_shared_urgent(); }
  ~UrgentSharedLock() { l_.unlock_shared(); }
  UrgentSharedLock(const UrgentSharedLock&) = delete;
  UrgentSharedLock& operator=(const UrgentSharedLock&) = delete;

 private:
  RwLock& l_;
};

struct ModelHolder {
  explicit ModelHolder(std::unique_ptr<memq::llm::Model> m) : model(std::move(m)), cfg(model->config()) {}
  std::unique_ptr<memq::llm::Model> model;
  const memq::llm::ModelConfig cfg;  // immutable copy: read without the lock
  RwLock mu;
};

struct AdapterHolder {
  AdapterHolder(std::unique_ptr<memq::llm::LoraAdapter> a, const memq::llm::ModelConfig& m)
      : lora(std::move(a)), model_cfg(m), size(lora->size()) {}
  std::unique_ptr<memq::llm::LoraAdapter> lora;
  const memq::llm::ModelConfig model_cfg;  // the config of the model it was made for
  const int64_t size;
  RwLock mu;
};

// Int32Array offsets from JS, widened to the engine's int64 offsets, checked to be a valid
// partition of `total` tokens.
inline std::vector<int64_t> offsets_arg(const Napi::Value& v, const char* name, size_t total) {
  auto a = typed_array_arg<int32_t>(v, name);
  Napi::Env env = v.Env();
  if (a.length < 1) throw Napi::RangeError::New(env, std::string(name) + " must hold at least one entry (0)");
  std::vector<int64_t> out(a.length);
  for (size_t i = 0; i < a.length; ++i) {
    out[i] = a.data[i];
    if ((i == 0 && out[i] != 0) || (i > 0 && out[i] < out[i - 1])) {
      throw Napi::RangeError::New(env, std::string(name) + " must start at 0 and never decrease; " + name + "[" +
                                           std::to_string(i) + "] = " + std::to_string(out[i]));
    }
  }
  if (static_cast<size_t>(out.back()) != total) {
    throw Napi::RangeError::New(env, std::string(name) + " must end at the number of tokens (" + std::to_string(total) +
                                         "), got " + std::to_string(out.back()));
  }
  return out;
}

// llm_model.cpp: a NativeLlmModel argument (TypeError naming it otherwise), and a new one.
std::shared_ptr<ModelHolder> model_arg(const Napi::Value& v, const char* name);
Napi::Object wrap_model(Napi::Env env, std::shared_ptr<ModelHolder> h);

// llm_train.cpp: a NativeLoraAdapter argument; undefined/null give null when `optional`.
std::shared_ptr<AdapterHolder> adapter_arg(const Napi::Value& v, const char* name, bool optional);
// TypeError naming `name` unless the adapter was made for a model with the same layer count
// and projection shapes as `model`.
void check_adapter_fits(Napi::Env env, const memq::llm::ModelConfig& model, const AdapterHolder& a, const char* name);
void InitLlmTrain(Napi::Env env, Napi::Object exports);

}  // namespace memq_addon
