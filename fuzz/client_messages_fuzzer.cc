// The client protocol (protocol/CLIENT.md): a request as nvsd decodes it
// from any client, and a reply as `nvs` and the gateway decode it.
//
// Properties: never a crash, a throw or undefined behaviour; a request is
// accepted with an id of 1 to 128 bytes and a payload in normal form (what
// nvsd fingerprints and journals), and its encoding decodes to the same
// request; a refusal is a `rejected` reply that encodes to a decodable reply;
// a decoded reply re-encodes to a decodable reply.
#include <nlohmann/json.hpp>

#include "fuzz_check.h"
#include "nvs/protocol/client_messages.h"
#include "nvs/protocol/messages.h"

namespace {

namespace proto = nvs::protocol;

void CheckRequest(std::string_view bytes) {
  const proto::DecodedClientRequest decoded = proto::DecodeClientRequest(bytes);
  if (!decoded.request) {
    const proto::ClientReply& rejection = decoded.rejection;
    NVS_FUZZ_CHECK(rejection.status == proto::ClientStatus::kRejected);
    NVS_FUZZ_CHECK(rejection.code == "bad_request" || rejection.code == "unknown_type" ||
                   rejection.code == "too_large");
    const auto echoed = proto::DecodeClientReply(proto::Encode(rejection));
    NVS_FUZZ_CHECK(echoed && echoed->code == rejection.code && echoed->id == rejection.id);
    return;
  }
  const proto::ClientRequest& request = *decoded.request;
  NVS_FUZZ_CHECK(!request.id.empty() && request.id.size() <= proto::kMaxClientIdBytes);
  if (request.type != proto::ClientRequestType::kStatus) {
    // nvsd fingerprints, journals and forwards the payload as it is: it must
    // already be in normal form.
    const auto normal = proto::CompactJson(request.payload);
    NVS_FUZZ_CHECK(normal.ok());
    NVS_FUZZ_CHECK(normal.value() == request.payload);
    NVS_FUZZ_CHECK(proto::Fnv1a64Hex(request.payload).size() == 16);
  }
  if (request.type == proto::ClientRequestType::kQuarantine) {
    const auto args = nlohmann::json::parse(request.payload, nullptr, false);
    NVS_FUZZ_CHECK(args.is_object() && args.contains("action") && args["action"].is_string());
  }
  const std::string encoded = proto::Encode(request);
  const proto::DecodedClientRequest again = proto::DecodeClientRequest(encoded);
  NVS_FUZZ_CHECK(again.request);
  NVS_FUZZ_CHECK(again.request->type == request.type);
  NVS_FUZZ_CHECK(again.request->id == request.id);
  NVS_FUZZ_CHECK(again.request->payload == request.payload);
}

void CheckReply(std::string_view bytes) {
  const auto reply = proto::DecodeClientReply(bytes);
  if (!reply) return;
  const std::string encoded = proto::Encode(*reply);
  const auto again = proto::DecodeClientReply(encoded);
  NVS_FUZZ_CHECK(again);
  NVS_FUZZ_CHECK(again->status == reply->status);
  NVS_FUZZ_CHECK(again->id == reply->id);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const unsigned char* data, std::size_t size) {
  const std::string_view bytes = nvs::fuzz::AsText(data, size);
  CheckRequest(bytes);
  CheckReply(bytes);
  return 0;
}
