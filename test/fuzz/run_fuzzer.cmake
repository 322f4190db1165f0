# Runs one libFuzzer target for ctest (see CMakeLists.txt beside this file).
#   MODE=smoke:  FUZZER OPTIONS over a scratch corpus in WORK (new inputs go
#                there) plus the seed corpus CORPUS (only read).
#   MODE=replay: FUZZER on every file under INPUTS, each run once.
# Fails when the fuzzer exits non-zero (a property broke, a sanitizer fired).
cmake_minimum_required(VERSION 3.25)

file(REMOVE_RECURSE ${WORK})
file(MAKE_DIRECTORY ${WORK}/corpus)

if(MODE STREQUAL "smoke")
  separate_arguments(options UNIX_COMMAND "${OPTIONS}")
  set(command ${FUZZER} ${options} -artifact_prefix=${WORK}/ ${WORK}/corpus ${CORPUS})
elseif(MODE STREQUAL "replay")
  file(GLOB_RECURSE inputs LIST_DIRECTORIES false ${INPUTS}/*)
  list(FILTER inputs EXCLUDE REGEX "/README[^/]*$")
  list(LENGTH inputs count)
  if(count EQUAL 0)
    message(STATUS "no regression inputs in ${INPUTS}")
    return()
  endif()
  list(SORT inputs)
  message(STATUS "replaying ${count} regression input(s) from ${INPUTS}")
  set(command ${FUZZER} -artifact_prefix=${WORK}/ ${inputs})
else()
  message(FATAL_ERROR "MODE must be smoke or replay")
endif()

execute_process(COMMAND ${command} RESULT_VARIABLE status)
if(NOT status EQUAL 0)
  message(FATAL_ERROR "${FUZZER} failed (${status}); inputs that failed are in ${WORK}/")
endif()
