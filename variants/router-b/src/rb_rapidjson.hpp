// router-b: the one place RapidJSON is included from.
#pragma once

#include <stdexcept>

// A violated RapidJSON precondition is a bug in router-b; make it an
// exception (caught by the session) rather than undefined behaviour.
#ifndef RAPIDJSON_ASSERT
#define RAPIDJSON_ASSERT(x) \
  ((x) ? static_cast<void>(0) : throw std::logic_error("rapidjson assertion: " #x))
#endif

#include <rapidjson/document.h>
#include <rapidjson/error/en.h>
#include <rapidjson/memorystream.h>
#include <rapidjson/reader.h>
