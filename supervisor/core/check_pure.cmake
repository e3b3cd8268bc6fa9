# Fails when a source of nvsd's core (CORE_DIR) includes a header of I/O,
# processes, sockets, files, clocks or logging, or reads a clock: the core
# takes events and the time as arguments and returns actions (ARCHITECTURE.md).
# Run as: cmake -DCORE_DIR=... -P check_pure.cmake
file(GLOB_RECURSE sources "${CORE_DIR}/*.h" "${CORE_DIR}/*.cc")
list(FILTER sources EXCLUDE REGEX "_test\\.cc$")
# Headers the core may not include (as a regular expression on the name).
set(forbidden_includes
    "zmq" "boost/process" "boost/asio" "sys/" "unistd\\.h" "fcntl\\.h" "poll\\.h" "signal\\.h" "csignal"
    "fstream" "iostream" "cstdio" "stdio\\.h" "filesystem" "thread" "mutex" "future" "systemd"
    "random" "ctime" "time\\.h"
    "nvs/supervisor/" "log\\.h" "state_dir\\.h" "variant_process\\.h" "cgroups\\.h" "quarantine_store\\.h")
# Calls the core may not make.
set(forbidden_calls "::now\\(" "getenv" "std::rand" "time\\(nullptr\\)")
set(problems "")
foreach(source IN LISTS sources)
  file(STRINGS "${source}" lines)
  set(number 0)
  foreach(line IN LISTS lines)
    math(EXPR number "${number} + 1")
    if(line MATCHES "^[ \t]*#[ \t]*include[ \t]*[<\"]([^>\"]+)[>\"]")
      set(header "${CMAKE_MATCH_1}")
      foreach(pattern IN LISTS forbidden_includes)
        if(header MATCHES "${pattern}")
          string(APPEND problems "${source}:${number}: includes <${header}> (I/O, a clock or logging: the shell's)\n")
        endif()
      endforeach()
    endif()
    foreach(pattern IN LISTS forbidden_calls)
      if(line MATCHES "${pattern}" AND NOT line MATCHES "^[ \t]*//")
        string(APPEND problems "${source}:${number}: calls ${pattern} (the core is given the time and its inputs)\n")
      endif()
    endforeach()
  endforeach()
endforeach()
list(LENGTH sources count)
if(problems)
  message(FATAL_ERROR "nvsd's core is not pure:\n${problems}")
endif()
message(STATUS "nvsd's core: ${count} files, none includes I/O, a clock or logging")
