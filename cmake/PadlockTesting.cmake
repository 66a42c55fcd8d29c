# padlock_add_test(<name> LABEL <label>... SOURCES ... [LIBS ...] [TIMEOUT s])
#
# Labels: unit (no servers), integration (starts its own Redis / PostgreSQL), e2e (also the real
# service binaries, driven from outside: tests/e2e except pure unit parts, and the conformance
# check; these carry integration too), chaos (the fault suite), no-tsan (skipped by the TSan stage).
#
# One test binary = one ctest entry, so that servers the harness starts (redis, postgres) are
# started once per binary and cleaned between test cases by the fixtures themselves.
include_guard(GLOBAL)

function(padlock_add_test name)
  cmake_parse_arguments(ARG "" "TIMEOUT" "LABEL;SOURCES;LIBS" ${ARGN})
  if(NOT ARG_LABEL)
    message(FATAL_ERROR "padlock_add_test(${name}): LABEL is required")
  endif()
  if(NOT ARG_TIMEOUT)
    set(ARG_TIMEOUT 300)
  endif()
  add_executable(${name} ${ARG_SOURCES})
  target_link_libraries(${name} PRIVATE ${ARG_LIBS} GTest::gtest GTest::gmock GTest::gtest_main)
  target_include_directories(${name} PRIVATE ${PROJECT_SOURCE_DIR})
  add_test(NAME ${name} COMMAND ${name} --gtest_color=no)
  set_tests_properties(${name} PROPERTIES LABELS "${ARG_LABEL}" TIMEOUT ${ARG_TIMEOUT})
endfunction()
