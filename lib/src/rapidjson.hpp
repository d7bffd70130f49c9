// RapidJSON as the library configures it. Every library source includes RapidJSON through this
// header, so all see the same configuration: its inline functions differ with these macros.
#pragma once

#if defined(__SSE2__) && !defined(RAPIDJSON_SSE2)
#define RAPIDJSON_SSE2  // vectorized whitespace and string scanning (x86-64 always has SSE2)
#endif
#include <rapidjson/document.h>
#include <rapidjson/memorystream.h>
#include <rapidjson/reader.h>
