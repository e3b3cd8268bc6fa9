// The HTML report renderer: one self-contained page (inline CSS and SVG, no
// script, nothing fetched) from a report model, for an operator reading it
// after an incident. Pure: no I/O, no clock, no global state; thread-safe.
// The model's schema and the page's stable hooks are in report/README.md.
#pragma once

#include <nlohmann/json_fwd.hpp>
#include <string>

namespace nvs::report {

// Renders one complete HTML document (UTF-8) from `model`. Never throws on
// odd input: missing members are shown as absent, members of an unexpected
// type are shown as their JSON text, every string is HTML-escaped, and
// invalid UTF-8 becomes U+FFFD.
std::string RenderHtml(const nlohmann::json& model);

}  // namespace nvs::report
