// The variant protocol codec (protocol/PROTOCOL.md): replies as nvsd (and
// nvs replay) decode them from any variant, and requests as the C++ variant
// SDK decodes them from nvsd.
//
// Properties: never a crash, a throw or undefined behaviour; an error names
// one of PROTOCOL.md §3's codes; a decoded message re-encodes to bytes that
// decode to a message with the same encoding (the codec is a fixed point
// after one pass); the JSON members (cmd, query, state, result) are valid
// compact JSON, so the SDK's json::parse of them cannot throw.
#include <nlohmann/json.hpp>

#include "fuzz_check.h"
#include "nvs/protocol/messages.h"

namespace {

namespace proto = nvs::protocol;

void CheckError(const proto::Error& error) {
  NVS_FUZZ_CHECK(error.code == proto::error_code::kMalformed || error.code == proto::error_code::kUnknownType ||
                 error.code == proto::error_code::kTooLarge);
  // The SDK answers with it: it must encode to a decodable error reply.
  const auto echoed = proto::DecodeReply(proto::Encode(proto::Reply{error}));
  NVS_FUZZ_CHECK(echoed.ok() && std::holds_alternative<proto::Error>(echoed.value()));
  NVS_FUZZ_CHECK(std::get<proto::Error>(echoed.value()).code == error.code);
  NVS_FUZZ_CHECK(std::get<proto::Error>(echoed.value()).seq == error.seq);
}

// What the SDK does with a JSON member before calling the controller.
void ParsesInTheSdk(const std::string& text) {
  NVS_FUZZ_CHECK(nlohmann::json::accept(text));
  const auto normal = proto::CompactJson(text);
  NVS_FUZZ_CHECK(normal.ok() && normal.value() == text);
}

void CheckRequest(std::string_view bytes) {
  const auto decoded = proto::DecodeRequest(bytes);
  if (!decoded.ok()) return CheckError(decoded.error());
  const proto::Request& request = decoded.value();
  if (const auto* apply = std::get_if<proto::Apply>(&request)) {
    ParsesInTheSdk(apply->cmd);
    NVS_FUZZ_CHECK(apply->time_ns >= 0);
  }
  if (const auto* query = std::get_if<proto::Query>(&request)) ParsesInTheSdk(query->query);
  if (const auto* restore = std::get_if<proto::Restore>(&request)) ParsesInTheSdk(restore->state);
  const std::string encoded = proto::Encode(request);
  const auto again = proto::DecodeRequest(encoded);
  NVS_FUZZ_CHECK(again.ok());
  NVS_FUZZ_CHECK(again.value().index() == request.index());
  NVS_FUZZ_CHECK(proto::SeqOf(again.value()) == proto::SeqOf(request));
  NVS_FUZZ_CHECK(proto::Encode(again.value()) == encoded);
  (void)proto::TypeName(request);
}

void CheckReply(std::string_view bytes) {
  const auto decoded = proto::DecodeReply(bytes);
  if (!decoded.ok()) return CheckError(decoded.error());
  const proto::Reply& reply = decoded.value();
  if (const auto* applied = std::get_if<proto::Applied>(&reply)) ParsesInTheSdk(applied->result);
  if (const auto* answer = std::get_if<proto::Answer>(&reply)) ParsesInTheSdk(answer->result);
  if (const auto* state = std::get_if<proto::StateReply>(&reply)) ParsesInTheSdk(state->state);
  const std::string encoded = proto::Encode(reply);
  const auto again = proto::DecodeReply(encoded);
  NVS_FUZZ_CHECK(again.ok());
  NVS_FUZZ_CHECK(again.value().index() == reply.index());
  NVS_FUZZ_CHECK(proto::SeqOf(again.value()) == proto::SeqOf(reply));
  NVS_FUZZ_CHECK(proto::Encode(again.value()) == encoded);
  (void)proto::TypeName(reply);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const unsigned char* data, std::size_t size) {
  const std::string_view bytes = nvs::fuzz::AsText(data, size);
  CheckRequest(bytes);
  CheckReply(bytes);
  const auto normal = proto::CompactJson(bytes);
  if (normal.ok()) {
    // The normal form is a fixed point.
    const auto twice = proto::CompactJson(normal.value());
    NVS_FUZZ_CHECK(twice.ok() && twice.value() == normal.value());
  }
  return 0;
}
