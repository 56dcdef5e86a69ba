cmake_minimum_required(VERSION 3.25)
# Post-build check (cmake -P) for executables linked by StaticDeps.cmake:
# fails if EXE still needs a shared library it links statically (LIST: the
# archives' names, libfoo). Needs READELF.
file(READ "${LIST}" names)
string(STRIP "${names}" names)
execute_process(COMMAND "${READELF}" -d "${EXE}"
  OUTPUT_VARIABLE out RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "${READELF} -d ${EXE} failed")
endif()
string(REGEX MATCHALL "Shared library: \\[[^]]+\\]" needed "${out}")
set(bad "")
foreach(n ${needed})
  string(REGEX REPLACE "^Shared library: \\[(.+)\\]$" "\\1" so "${n}")
  string(REGEX REPLACE "\\.so(\\..*)?$" "" base "${so}")
  if(base IN_LIST names)
    list(APPEND bad "${so}")
  endif()
endforeach()
if(bad)
  file(REMOVE "${EXE}")
  message(FATAL_ERROR "${EXE} is linked statically against these libraries "
    "but still needs them dynamically: ${bad}")
endif()
