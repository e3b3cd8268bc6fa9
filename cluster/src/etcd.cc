#include "nvs/cluster/etcd.h"

#include <curl/curl.h>

#include <algorithm>
#include <memory>
#include <nlohmann/json.hpp>

namespace nvs::cluster {

namespace {

using nlohmann::json;

// A 64-bit number of the gateway: a JSON string, or absent when 0 (the
// protobuf JSON mapping leaves out default values).
std::int64_t Int64(const json& object, const char* key) {
  if (!object.is_object() || !object.contains(key)) return 0;
  const json& v = object[key];
  if (v.is_number_integer()) return v.get<std::int64_t>();
  if (!v.is_string()) return 0;
  try {
    return std::stoll(v.get<std::string>());
  } catch (const std::exception&) {
    return 0;
  }
}

// A string member as the gateway wrote it ("" when absent or not a string).
std::string Raw(const json& object, const char* key) {
  if (!object.is_object() || !object.contains(key) || !object[key].is_string()) return "";
  return object[key].get<std::string>();
}

// A key or value: base64 in the gateway's JSON.
std::string Text(const json& object, const char* key) { return Base64Decode(Raw(object, key)).value_or(""); }

KeyValue ToKeyValue(const json& kv) {
  return {Text(kv, "key"), Text(kv, "value"), Int64(kv, "create_revision"), Int64(kv, "mod_revision"),
          Int64(kv, "lease")};
}

}  // namespace

std::string PrefixEnd(std::string prefix) {
  while (!prefix.empty()) {
    auto& last = reinterpret_cast<unsigned char&>(prefix.back());
    if (last < 0xff) {
      ++last;
      return prefix;
    }
    prefix.pop_back();
  }
  return std::string(1, '\0');  // (every key)
}

std::string Base64Encode(std::string_view bytes) {
  static constexpr char kAlphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  out.reserve((bytes.size() + 2) / 3 * 4);
  std::size_t i = 0;
  for (; i + 2 < bytes.size(); i += 3) {
    const std::uint32_t n = (std::uint32_t(std::uint8_t(bytes[i])) << 16) |
                            (std::uint32_t(std::uint8_t(bytes[i + 1])) << 8) | std::uint8_t(bytes[i + 2]);
    for (int shift : {18, 12, 6, 0}) out += kAlphabet[(n >> shift) & 63];
  }
  if (i + 1 == bytes.size()) {
    const std::uint32_t n = std::uint32_t(std::uint8_t(bytes[i])) << 16;
    out += kAlphabet[(n >> 18) & 63];
    out += kAlphabet[(n >> 12) & 63];
    out += "==";
  } else if (i + 2 == bytes.size()) {
    const std::uint32_t n = (std::uint32_t(std::uint8_t(bytes[i])) << 16) | (std::uint32_t(std::uint8_t(bytes[i + 1])) << 8);
    out += kAlphabet[(n >> 18) & 63];
    out += kAlphabet[(n >> 12) & 63];
    out += kAlphabet[(n >> 6) & 63];
    out += '=';
  }
  return out;
}

std::optional<std::string> Base64Decode(std::string_view text) {
  if (text.size() % 4 != 0) return std::nullopt;
  const auto value = [](char c) -> int {
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+') return 62;
    if (c == '/') return 63;
    return -1;
  };
  std::string out;
  out.reserve(text.size() / 4 * 3);
  for (std::size_t i = 0; i < text.size(); i += 4) {
    const bool last = i + 4 == text.size();
    const int pad = last ? (text[i + 3] == '=' ? (text[i + 2] == '=' ? 2 : 1) : 0) : 0;
    std::uint32_t n = 0;
    for (int k = 0; k < 4; ++k) {
      const char c = text[i + k];
      const int v = k >= 4 - pad ? 0 : value(c);
      if (v < 0) return std::nullopt;
      n = (n << 6) | static_cast<std::uint32_t>(v);
    }
    out += static_cast<char>((n >> 16) & 0xff);
    if (pad < 2) out += static_cast<char>((n >> 8) & 0xff);
    if (pad < 1) out += static_cast<char>(n & 0xff);
  }
  return out;
}

EtcdClient::EtcdClient(EtcdOptions options) : options_(std::move(options)) {}
EtcdClient::~EtcdClient() = default;
EtcdClient::EtcdClient(EtcdClient&&) noexcept = default;

void EtcdClient::CurlCleanup::operator()(void* handle) const { curl_easy_cleanup(static_cast<CURL*>(handle)); }

namespace {

// libcurl, set up once for the process (curl_global_init is not thread-safe
// to call concurrently: a function-local static is).
void CurlOnce() {
  static const bool done = curl_global_init(CURL_GLOBAL_DEFAULT) == CURLE_OK;
  (void)done;
}

}  // namespace

namespace {

struct Streamed {
  std::string* collect = nullptr;
  const std::function<bool(std::string_view)>* on_data = nullptr;
};

std::size_t Deliver(char* data, std::size_t size, std::size_t count, void* out) {
  auto* to = static_cast<Streamed*>(out);
  if (to->on_data != nullptr && !(*to->on_data)(std::string_view(data, size * count))) return 0;  // (stops the transfer)
  if (to->on_data == nullptr) to->collect->append(data, size * count);
  return size * count;
}

}  // namespace

// (libcurl, not cpp-httplib: the gateway answers an error chunked with HTTP
// trailers, which cpp-httplib 0.11 cannot read, so etcd's reason was lost.)
namespace {

int KeepGoing(void* go_on, curl_off_t, curl_off_t, curl_off_t, curl_off_t) {
  return (*static_cast<const std::function<bool()>*>(go_on))() ? 0 : 1;  // (non-zero aborts the transfer)
}

}  // namespace

EtcdClient::Answer EtcdClient::Post(const std::string& endpoint, const std::string& path, const std::string& body,
                                    std::chrono::milliseconds timeout,
                                    const std::function<bool(std::string_view)>* on_data,
                                    const std::function<bool()>* go_on) {
  Answer answer;
  // One handle per client, reset for each request: libcurl keeps its
  // connection open between requests (a fenced write took a TCP handshake
  // more than it needed).
  if (!handle_) handle_.reset(curl_easy_init());
  if (!handle_) {
    answer.error = "libcurl could not start a request";
    return answer;
  }
  CURL* const curl = handle_.get();
  curl_easy_reset(curl);
  curl_slist* list = curl_slist_append(nullptr, "Content-Type: application/json");
  if (!token_.empty() && path != "/v3/auth/authenticate") list = curl_slist_append(list, ("Authorization: " + token_).c_str());
  std::unique_ptr<curl_slist, void (*)(curl_slist*)> headers(list, curl_slist_free_all);
  const std::string url = endpoint + path;
  Streamed sink{&answer.text, on_data};
  char error[CURL_ERROR_SIZE] = "";
  curl_easy_setopt(curl, CURLOPT_URL, url.c_str());
  curl_easy_setopt(curl, CURLOPT_POSTFIELDS, body.c_str());
  curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE, static_cast<long>(body.size()));
  curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers.get());
  curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, static_cast<long>(std::max<std::int64_t>(1, timeout.count())));
  // (A connection takes at most the client's timeout even in a long call,
  // and a long call notices a peer gone silent through TCP keepalives.)
  curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT_MS,
                   static_cast<long>(std::max<std::int64_t>(1, std::min(timeout, options_.timeout).count())));
  curl_easy_setopt(curl, CURLOPT_TCP_KEEPALIVE, 1L);
  curl_easy_setopt(curl, CURLOPT_TCP_KEEPIDLE, 2L);
  curl_easy_setopt(curl, CURLOPT_TCP_KEEPINTVL, 1L);
  curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, Deliver);
  curl_easy_setopt(curl, CURLOPT_WRITEDATA, &sink);
  curl_easy_setopt(curl, CURLOPT_ERRORBUFFER, error);
  if (!options_.ca_file.empty()) curl_easy_setopt(curl, CURLOPT_CAINFO, options_.ca_file.c_str());
  if (!options_.cert_file.empty()) curl_easy_setopt(curl, CURLOPT_SSLCERT, options_.cert_file.c_str());
  if (!options_.key_file.empty()) curl_easy_setopt(curl, CURLOPT_SSLKEY, options_.key_file.c_str());
  if (go_on != nullptr) {
    curl_easy_setopt(curl, CURLOPT_XFERINFOFUNCTION, KeepGoing);
    curl_easy_setopt(curl, CURLOPT_XFERINFODATA, const_cast<std::function<bool()>*>(go_on));
    curl_easy_setopt(curl, CURLOPT_NOPROGRESS, 0L);
  }
  const CURLcode code = curl_easy_perform(curl);
  curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &answer.status);
  if (code != CURLE_OK && !(on_data != nullptr && answer.status == 200 &&
                            (code == CURLE_OPERATION_TIMEDOUT || code == CURLE_WRITE_ERROR))) {
    answer.error = error[0] ? error : curl_easy_strerror(code);
    return answer;
  }
  answer.reached = true;
  return answer;
}

Status EtcdClient::Authenticate(const std::string& endpoint, std::chrono::milliseconds timeout) {
  const json body = {{"name", options_.username}, {"password", options_.password}};
  Answer a = Post(endpoint, "/v3/auth/authenticate", body.dump(), timeout, nullptr);
  if (!a.reached) return Status::Error(endpoint + ": " + a.error);
  const json j = json::parse(a.text, nullptr, false);
  if (a.status != 200 || !j.is_object() || !j.contains("token") || !j["token"].is_string()) {
    return Status::Error("etcd refused the user " + options_.username + ": " +
                         (j.is_object() ? j.value("message", a.text) : a.text));
  }
  token_ = j["token"].get<std::string>();
  return Status::Ok();
}

Result<std::string> EtcdClient::Call(const std::string& path, const std::string& body, std::chrono::milliseconds timeout,
                                     const std::function<bool()>* go_on) {
  if (options_.endpoints.empty()) return Status::Error("etcd: no endpoint configured");
  CurlOnce();
  // One deadline for the call, whatever the number of endpoints tried.
  const auto until = std::chrono::steady_clock::now() + timeout;
  std::string errors;
  for (std::size_t k = 0; k < options_.endpoints.size(); ++k) {
    const auto left = [&] {
      return std::chrono::duration_cast<std::chrono::milliseconds>(until - std::chrono::steady_clock::now());
    };
    if (left() <= std::chrono::milliseconds(0)) break;
    const std::size_t at = (preferred_ + k) % options_.endpoints.size();
    const std::string& endpoint = options_.endpoints[at];
    if (!options_.username.empty() && token_.empty()) {
      if (Status auth = Authenticate(endpoint, left()); !auth.ok()) {
        errors += (errors.empty() ? "" : "; ") + auth.message();
        continue;
      }
    }
    Answer a = Post(endpoint, path, body, left(), nullptr, go_on);
    if (go_on != nullptr && !(*go_on)()) return Status::Error("etcd " + path + ": stopped");
    if (a.reached && a.status != 200 && !token_.empty() && a.text.find("invalid auth token") != std::string::npos &&
        left() > std::chrono::milliseconds(0)) {
      token_.clear();  // (expired: etcd's simple tokens last 5 minutes)
      if (Authenticate(endpoint, left()).ok()) a = Post(endpoint, path, body, left(), nullptr);
    }
    if (!a.reached) {
      errors += (errors.empty() ? "" : "; ") + endpoint + ": " + a.error;
      continue;
    }
    if (a.status != 200) {
      // etcd answered: an error of the request itself (another endpoint
      // would say the same), e.g. a lease that does not exist.
      const json e = json::parse(a.text, nullptr, false);
      const std::string message = e.is_object() ? e.value("message", e.value("error", a.text)) : a.text;
      return Status::Error("etcd " + path + ": " + message + " (HTTP " + std::to_string(a.status) + ")");
    }
    preferred_ = at;
    return a.text;
  }
  return Status::Error("etcd " + path + ": no endpoint answered within " + std::to_string(timeout.count()) + " ms (" +
                       errors + ")");
}

namespace {

Result<json> Parsed(const Result<std::string>& text) {
  if (!text.ok()) return text.status();
  json j = json::parse(text.value(), nullptr, false);
  if (!j.is_object()) return Status::Error("etcd: an answer that is not a JSON object: " + text.value().substr(0, 200));
  return j;
}

}  // namespace

Result<std::int64_t> EtcdClient::GrantLease(int ttl_seconds) {
  auto j = Parsed(Call("/v3/lease/grant", json{{"TTL", std::to_string(ttl_seconds)}}.dump(), options_.timeout));
  if (!j.ok()) return j.status();
  const std::int64_t id = Int64(j.value(), "ID");
  if (id == 0) return Status::Error("etcd: lease grant without an id: " + j.value().dump());
  return id;
}

Result<std::int64_t> EtcdClient::KeepAlive(std::int64_t lease) {
  auto j = Parsed(Call("/v3/lease/keepalive", json{{"ID", std::to_string(lease)}}.dump(), options_.timeout));
  if (!j.ok()) return j.status();
  const json& result = j.value().contains("result") ? j.value()["result"] : j.value();
  return Int64(result, "TTL");
}

Status EtcdClient::Revoke(std::int64_t lease) {
  return Call("/v3/lease/revoke", json{{"ID", std::to_string(lease)}}.dump(), options_.timeout).status();
}

Result<Leadership> EtcdClient::Campaign(const std::string& election, std::int64_t lease, const std::string& value,
                                        std::chrono::milliseconds wait, const std::function<bool()>* go_on) {
  const json body = {{"name", Base64Encode(election)}, {"lease", std::to_string(lease)}, {"value", Base64Encode(value)}};
  auto j = Parsed(Call("/v3/election/campaign", body.dump(), wait, go_on));
  if (!j.ok()) return j.status();
  const json& leader = j.value().value("leader", json::object());
  Leadership l{election, Text(leader, "key"), Int64(leader, "rev"), Int64(leader, "lease")};
  if (l.key.empty() || l.create_revision == 0) return Status::Error("etcd: a campaign answer without a leader key: " + j.value().dump());
  return l;
}

// The leader is the oldest key of the election (how etcd's election API
// decides it), read as a range: "nobody leads" is then an empty answer,
// not an error to tell from the others.
Result<std::optional<KeyValue>> EtcdClient::Leader(const std::string& election) {
  const std::string prefix = election + "/";
  const json body = {{"key", Base64Encode(prefix)},
                     {"range_end", Base64Encode(PrefixEnd(prefix))},
                     {"sort_order", "ASCEND"},
                     {"sort_target", "CREATE"},
                     {"limit", "1"}};
  auto j = Parsed(Call("/v3/kv/range", body.dump(), options_.timeout));
  if (!j.ok()) return j.status();
  const json kvs = j.value().value("kvs", json::array());
  if (kvs.empty()) return std::optional<KeyValue>();
  return std::optional<KeyValue>(ToKeyValue(kvs.front()));
}

Status EtcdClient::Resign(const Leadership& l) {
  const json body = {{"leader",
                      {{"name", Base64Encode(l.election)}, {"key", Base64Encode(l.key)},
                       {"rev", std::to_string(l.create_revision)}, {"lease", std::to_string(l.lease)}}}};
  return Call("/v3/election/resign", body.dump(), options_.timeout).status();
}

Result<std::optional<std::size_t>> EtcdClient::LeaderEndpoint(std::chrono::milliseconds each,
                                                              const std::function<bool()>* go_on) {
  CurlOnce();
  std::string errors;
  bool answered = false;
  for (std::size_t k = 0; k < options_.endpoints.size(); ++k) {
    if (go_on != nullptr && !(*go_on)()) return Status::Error("etcd: stopped");
    const Answer a = Post(options_.endpoints[k], "/v3/maintenance/status", "{}", each, nullptr, go_on);
    if (!a.reached || a.status != 200) {
      errors += (errors.empty() ? "" : "; ") + options_.endpoints[k] + ": " +
                (a.reached ? "HTTP " + std::to_string(a.status) : a.error);
      continue;
    }
    answered = true;
    const json j = json::parse(a.text, nullptr, false);
    if (!j.is_object()) continue;
    // (Member ids are unsigned 64-bit numbers written as strings: compared
    // as such, never as a signed 64-bit number.)
    const std::string self = Raw(j.value("header", json::object()), "member_id");
    if (!self.empty() && self == Raw(j, "leader")) return std::optional<std::size_t>(k);
  }
  if (!answered) return Status::Error("etcd: no endpoint answered its status (" + errors + ")");
  return std::optional<std::size_t>();
}

void EtcdClient::Prefer(std::size_t index) {
  if (index < options_.endpoints.size()) preferred_ = index;
}

Result<bool> EtcdClient::FencedPut(const Leadership& l, const std::vector<std::pair<std::string, std::string>>& puts) {
  return FencedTxn(l, puts, {}, options_.timeout);
}

Result<bool> EtcdClient::FencedTxn(const Leadership& l, const std::vector<std::pair<std::string, std::string>>& puts,
                                   const std::vector<std::pair<std::string, std::string>>& delete_ranges,
                                   std::chrono::milliseconds timeout) {
  json success = json::array();
  for (const auto& [key, value] : puts) {
    success.push_back({{"request_put", {{"key", Base64Encode(key)}, {"value", Base64Encode(value)}}}});
  }
  for (const auto& [from, to] : delete_ranges) {
    success.push_back({{"request_delete_range", {{"key", Base64Encode(from)}, {"range_end", Base64Encode(to)}}}});
  }
  const json body = {{"compare",
                      {{{"key", Base64Encode(l.key)},
                        {"target", "CREATE"},
                        {"result", "EQUAL"},
                        {"create_revision", std::to_string(l.create_revision)}}}},
                     {"success", success}};
  auto j = Parsed(Call("/v3/kv/txn", body.dump(), timeout));
  if (!j.ok()) return j.status();
  return j.value().value("succeeded", false);
}

Status EtcdClient::Put(const std::string& key, const std::string& value, std::int64_t lease) {
  json body = {{"key", Base64Encode(key)}, {"value", Base64Encode(value)}};
  if (lease != 0) body["lease"] = std::to_string(lease);
  return Call("/v3/kv/put", body.dump(), options_.timeout).status();
}

Result<RangeResult> EtcdClient::RangeFrom(const std::string& from, const std::string& prefix) {
  const json body = {{"key", Base64Encode(from)}, {"range_end", Base64Encode(PrefixEnd(prefix))}};
  auto j = Parsed(Call("/v3/kv/range", body.dump(), options_.timeout));
  if (!j.ok()) return j.status();
  RangeResult out;
  out.revision = Int64(j.value().value("header", json::object()), "revision");
  for (const auto& kv : j.value().value("kvs", json::array())) out.kvs.push_back(ToKeyValue(kv));
  return out;
}

// The gateway streams one JSON object per line: the watch's creation, then
// its events; a cancel (a compacted revision) ends it.
Result<std::int64_t> EtcdClient::Watch(const std::string& prefix, std::int64_t start_revision,
                                       std::chrono::milliseconds wait,
                                       const std::function<bool(const WatchEvent&)>& on_event,
                                       const std::string& from) {
  if (options_.endpoints.empty()) return Status::Error("etcd: no endpoint configured");
  CurlOnce();
  const json body = {{"create_request",
                      {{"key", Base64Encode(from.empty() ? prefix : from)},
                       {"range_end", Base64Encode(PrefixEnd(prefix))},
                       {"start_revision", std::to_string(start_revision)}}}};
  const std::string endpoint = options_.endpoints[preferred_ % options_.endpoints.size()];
  if (!options_.username.empty() && token_.empty()) {
    if (Status auth = Authenticate(endpoint, options_.timeout); !auth.ok()) {
      preferred_ = (preferred_ + 1) % options_.endpoints.size();
      return auth;
    }
  }
  std::int64_t next = start_revision;
  std::string pending;
  std::string refused;
  const std::function<bool(std::string_view)> on_data = [&](std::string_view data) {
    pending.append(data);
    for (std::size_t eol; (eol = pending.find('\n')) != std::string::npos;) {
      const json message = json::parse(pending.substr(0, eol), nullptr, false);
      pending.erase(0, eol + 1);
      if (!message.is_object()) continue;
      if (message.contains("error")) {
        refused = message["error"].value("message", message["error"].dump());
        return false;
      }
      const json& result = message.value("result", json::object());
      if (result.value("canceled", false)) {
        refused = "the watch was canceled: " + result.value("cancel_reason", std::string("compacted revision ")) +
                  std::to_string(Int64(result, "compact_revision"));
        return false;
      }
      for (const auto& e : result.value("events", json::array())) {
        WatchEvent event{ToKeyValue(e.value("kv", json::object())), e.value("type", std::string()) == "DELETE"};
        next = std::max(next, event.kv.mod_revision + 1);
        if (!on_event(event)) return false;
      }
    }
    return true;
  };
  Answer a = Post(endpoint, "/v3/watch", body.dump(), wait, &on_data);
  if ((refused + a.text).find("invalid auth token") != std::string::npos) {
    token_.clear();  // (expired: the next watch authenticates again, as Call does)
  }
  if (!refused.empty()) return Status::Error("etcd watch: " + refused);
  if (!a.reached) {
    preferred_ = (preferred_ + 1) % options_.endpoints.size();  // (the next watch tries another)
    return Status::Error("etcd watch at " + endpoint + ": " + a.error);
  }
  if (a.status != 200) return Status::Error("etcd watch: HTTP " + std::to_string(a.status) + ": " + a.text);
  return next;
}

Result<std::vector<KeyValue>> EtcdClient::Prefix(const std::string& prefix) {
  const json body = {{"key", Base64Encode(prefix)}, {"range_end", Base64Encode(PrefixEnd(prefix))}};
  auto j = Parsed(Call("/v3/kv/range", body.dump(), options_.timeout));
  if (!j.ok()) return j.status();
  std::vector<KeyValue> out;
  for (const auto& kv : j.value().value("kvs", json::array())) out.push_back(ToKeyValue(kv));
  return out;
}

}  // namespace nvs::cluster
