# StaticDeps.cmake: link chosen executables (asflowctl, asflow-worker)
# against the static archives (.a) of their third-party libraries, while the
# libraries, the daemon and the tests keep linking the shared ones.
#
# Why: a CLI started many times pays ~60 shared objects to ld.so on every
# start (symbol lookup, relocations, mmaps). glibc, libstdc++ and libgcc
# stay dynamic (a static glibc breaks getaddrinfo/NSS).
#
# How: the project's libraries link imported targets (gRPC::grpc++,
# absl::..., yaml-cpp, PkgConfig::RE2...). asflow_static_deps_apply() rewrites
# each such item X in the INTERFACE_LINK_LIBRARIES of the project libraries
# an opted-in executable reaches into
#   $<IF:$<BOOL:$<TARGET_PROPERTY:ASFLOW_STATIC_DEPS>>,asflow_static_X,X>
# $<TARGET_PROPERTY:prop> in a link interface is read on the target being
# linked, so only executables with ASFLOW_STATIC_DEPS set see the static
# flavour; the libraries themselves, their objects and every other binary
# are unchanged. asflow_static_X carries X's usage requirements (include
# directories, definitions, options) and links asflow_static_deps: the .a
# beside each shared library of the items' imported-target closures, in one
# $<LINK_GROUP:RESCAN> (--start-group/--end-group) placed after the
# project's libraries, then the system libraries (dl, m, rt) and flags.
# An item whose closure lacks an archive (spdlog, fmt: Debian ships no .a)
# stays dynamic. A post-build check (CheckStaticDeps.cmake) fails the build
# if such an executable still needs one of the libraries it links
# statically (the same library both static and dynamic).
#
# Usage (top-level CMakeLists.txt, after the find_package calls):
#   include(StaticDeps)
#   ...add_subdirectory()...; in a subdirectory: asflow_static_executable(tgt)
#   asflow_static_deps_apply()   # once, after every add_subdirectory

set(_ASFLOW_SD_DIR ${CMAKE_CURRENT_LIST_DIR})
set(_ASFLOW_SD_SYSTEM_LIBS dl m rt pthread atomic c)

# The file an imported target links (any configuration: Debian installs one
# flavour per directory and only the sibling .a is of interest).
function(_asflow_sd_location tgt out)
  set(loc "")
  get_target_property(type ${tgt} TYPE)
  if(NOT type STREQUAL "INTERFACE_LIBRARY")
    string(TOUPPER "${CMAKE_BUILD_TYPE}" cfg)
    get_target_property(configs ${tgt} IMPORTED_CONFIGURATIONS)
    foreach(c ${cfg} NOCONFIG ${configs})
      get_target_property(loc ${tgt} IMPORTED_LOCATION_${c})
      if(loc)
        break()
      endif()
    endforeach()
    if(NOT loc)
      get_target_property(loc ${tgt} IMPORTED_LOCATION)
    endif()
  endif()
  if(NOT loc)
    set(loc "")
  endif()
  set(${out} "${loc}" PARENT_SCOPE)
endfunction()

# The archive for a library given as a path (/x/libfoo.so.1.2) or a name
# (foo, -lfoo), or "" if there is none.
function(_asflow_sd_archive lib out)
  set(archive "")
  if(lib MATCHES "^(.*)/lib([^/]+)\\.(so|a)(\\.[0-9.]+)?$")
    if(EXISTS "${CMAKE_MATCH_1}/lib${CMAKE_MATCH_2}.a")
      set(archive "${CMAKE_MATCH_1}/lib${CMAKE_MATCH_2}.a")
    endif()
  else()
    string(REGEX REPLACE "^-l" "" name "${lib}")
    string(MAKE_C_IDENTIFIER "ASFLOW_SD_ARCHIVE_${name}" var)
    find_library(${var} NAMES lib${name}.a)
    mark_as_advanced(${var})
    if(${var})
      set(archive "${${var}}")
    endif()
  endif()
  set(${out} "${archive}" PARENT_SCOPE)
endfunction()

# Walks the imported-target closure of a link item. Sets <out>_ARCHIVES
# (ordered, unique), <out>_MISSING (libraries without an archive),
# <out>_OTHER (system libraries, flags, generator expressions: kept as they
# are) and <out>_LINKS (whether it links any library at all; header-only
# targets do not and are left alone).
function(_asflow_sd_closure item out)
  set(queue "${item}")
  set(seen "")
  set(archives "")
  set(missing "")
  set(other "")
  set(links FALSE)
  while(queue)
    list(POP_FRONT queue it)
    if(it MATCHES "^\\$<LINK_ONLY:([^$<>]+)>$")
      set(it "${CMAKE_MATCH_1}")
    endif()
    if(it IN_LIST seen)
      continue()
    endif()
    list(APPEND seen "${it}")
    set(lib "")
    if(TARGET "${it}")
      get_target_property(imported "${it}" IMPORTED)
      if(NOT imported)
        list(APPEND missing "${it} (a project target)")
        continue()
      endif()
      _asflow_sd_location("${it}" lib)
      get_target_property(deps "${it}" INTERFACE_LINK_LIBRARIES)
      if(deps)
        list(APPEND queue ${deps})
      endif()
    elseif(it MATCHES "\\$<")
      list(APPEND other "${it}")  # e.g. $<$<PLATFORM_ID:Darwin>:...>
    elseif(it MATCHES "^-l(.+)$" OR it MATCHES "^[A-Za-z0-9_+.][A-Za-z0-9_+.-]*$")
      string(REGEX REPLACE "^-l" "" name "${it}")
      if(name IN_LIST _ASFLOW_SD_SYSTEM_LIBS)
        list(APPEND other "${it}")
      else()
        set(lib "${it}")
      endif()
    elseif(IS_ABSOLUTE "${it}")
      set(lib "${it}")
    else()
      list(APPEND other "${it}")  # a flag: -pthread, -Wl,...
    endif()
    if(lib)
      set(links TRUE)
      _asflow_sd_archive("${lib}" archive)
      if(archive)
        list(APPEND archives "${archive}")
      else()
        list(APPEND missing "${lib}")
      endif()
    endif()
  endwhile()
  list(REMOVE_DUPLICATES archives)
  set(${out}_ARCHIVES "${archives}" PARENT_SCOPE)
  set(${out}_MISSING "${missing}" PARENT_SCOPE)
  set(${out}_OTHER "${other}" PARENT_SCOPE)
  set(${out}_LINKS ${links} PARENT_SCOPE)
endfunction()

# The option: AUTO (default) is ON when the archives of the main
# dependencies exist, OFF otherwise.
set(ASFLOW_STATIC_CLIENT AUTO CACHE STRING
  "Link asflowctl and asflow-worker against static gRPC/protobuf/abseil/... archives (faster start-up): ON, OFF or AUTO")
set_property(CACHE ASFLOW_STATIC_CLIENT PROPERTY STRINGS AUTO ON OFF)
set(_asflow_sd_probe gRPC::grpc++ protobuf::libprotobuf yaml-cpp
  PkgConfig::RE2 PkgConfig::ZSTD ZLIB::ZLIB absl::strings)
set(_asflow_sd_missing "")
foreach(item ${_asflow_sd_probe})
  if(TARGET ${item})
    _asflow_sd_closure(${item} _p)
    list(APPEND _asflow_sd_missing ${_p_MISSING})
  endif()
endforeach()
list(REMOVE_DUPLICATES _asflow_sd_missing)
string(REPLACE ";" ", " _asflow_sd_m "${_asflow_sd_missing}")
if(ASFLOW_STATIC_CLIENT STREQUAL "AUTO")
  if(_asflow_sd_missing)
    set(_asflow_sd_on OFF)
    message(STATUS "ASFLOW_STATIC_CLIENT: AUTO -> OFF: no static archive (.a) "
      "for ${_asflow_sd_m}; asflowctl and asflow-worker link shared libraries")
  else()
    set(_asflow_sd_on ON)
    message(STATUS "ASFLOW_STATIC_CLIENT: AUTO -> ON")
  endif()
elseif(ASFLOW_STATIC_CLIENT)
  if(_asflow_sd_missing)
    message(FATAL_ERROR "ASFLOW_STATIC_CLIENT=ON but there is no static "
      "archive (.a) for ${_asflow_sd_m}. Install it or configure with "
      "-DASFLOW_STATIC_CLIENT=OFF (or AUTO).")
  endif()
  set(_asflow_sd_on ON)
  message(STATUS "ASFLOW_STATIC_CLIENT: ON")
else()
  set(_asflow_sd_on OFF)
  message(STATUS "ASFLOW_STATIC_CLIENT: OFF")
endif()

# A static client is a large PIE whose start-up applies tens of thousands
# of relative relocations; packed ones (DT_RELR, binutils >= 2.38, glibc
# >= 2.36, both in Debian 12) are applied faster: asflowctl --help 0.1-0.4
# ms sooner (~3 ms; medians of 21 runs, 3 interleaved rounds, twice). PIE
# (ASLR) stays.
include(CheckLinkerFlag)
check_linker_flag(CXX "LINKER:-z,pack-relative-relocs" ASFLOW_HAVE_PACKED_RELOCS)

# Marks an executable for static third-party linking (no-op when the option
# is OFF).
function(asflow_static_executable tgt)
  if(NOT _asflow_sd_on)
    return()
  endif()
  set_property(TARGET ${tgt} PROPERTY ASFLOW_STATIC_DEPS ON)
  if(ASFLOW_HAVE_PACKED_RELOCS)
    target_link_options(${tgt} PRIVATE "LINKER:-z,pack-relative-relocs")
  endif()
  set_property(GLOBAL APPEND PROPERTY ASFLOW_STATIC_EXECUTABLES ${tgt})
  # The check: the executable needs none of the libraries it links
  # statically (list written by asflow_static_deps_apply).
  add_custom_command(TARGET ${tgt} POST_BUILD
    COMMAND ${CMAKE_COMMAND} -DEXE=$<TARGET_FILE:${tgt}>
      -DLIST=${CMAKE_BINARY_DIR}/asflow_static_deps.txt
      -DREADELF=${CMAKE_READELF}
      -P ${_ASFLOW_SD_DIR}/CheckStaticDeps.cmake
    VERBATIM)
endfunction()

# Rewrites the items of list variable <var> (link items) for a static
# executable: an imported item with a static closure becomes its
# asflow_static_ wrapper, under the head-target condition when <cond> is set
# (a library's link interface) or unconditionally (the executable's own
# LINK_LIBRARIES). Project targets it meets go on `queue`; the totals go on
# all_archives, all_other, static_items, dynamic_items, dynamic_libs (caller's scope).
macro(_asflow_sd_rewrite var cond)
  set(_new "")
  foreach(_item ${${var}})
    set(_name "${_item}")
    set(_link_only FALSE)
    if(_item MATCHES "^\\$<LINK_ONLY:([^$<>]+)>$")
      set(_name "${CMAKE_MATCH_1}")
      set(_link_only TRUE)
    endif()
    set(_keep TRUE)
    if(TARGET "${_name}")
      get_target_property(_imported ${_name} IMPORTED)
      if(NOT _imported)
        list(APPEND queue ${_name})
      else()
        _asflow_sd_closure(${_name} _c)
        if(_c_LINKS AND _c_MISSING)
          list(APPEND dynamic_items ${_name})
          list(APPEND dynamic_libs ${_c_MISSING})
        elseif(_c_LINKS)
          set(_keep FALSE)
          list(APPEND all_archives ${_c_ARCHIVES})
          list(APPEND all_other ${_c_OTHER})
          list(APPEND static_items ${_name})
          string(MAKE_C_IDENTIFIER "${_name}" _id)
          set(_wrapper "asflow_static_${_id}")
          if(NOT TARGET ${_wrapper})
            # The item's usage requirements, without its libraries.
            add_library(${_wrapper} INTERFACE)
            foreach(_p INCLUDE_DIRECTORIES SYSTEM_INCLUDE_DIRECTORIES
                COMPILE_DEFINITIONS COMPILE_OPTIONS COMPILE_FEATURES
                LINK_OPTIONS LINK_DIRECTORIES)
              set_property(TARGET ${_wrapper} PROPERTY
                INTERFACE_${_p} "$<TARGET_PROPERTY:${_name},INTERFACE_${_p}>")
            endforeach()
            target_link_libraries(${_wrapper} INTERFACE asflow_static_deps)
          endif()
          if(${cond})
            set(_choice "$<IF:$<BOOL:$<TARGET_PROPERTY:ASFLOW_STATIC_DEPS>>,${_wrapper},${_name}>")
          else()
            set(_choice "${_wrapper}")
          endif()
          if(_link_only)
            set(_choice "$<LINK_ONLY:${_choice}>")
          endif()
          list(APPEND _new "${_choice}")
        endif()
        # else: header-only, kept
      endif()
    endif()
    if(_keep)
      list(APPEND _new "${_item}")
    endif()
  endforeach()
  set(${var} "${_new}")
endmacro()

# _asflow_sd_rewrite on property <prop> of target <tgt>, in place.
macro(_asflow_sd_rewrite_property tgt prop cond)
  get_target_property(_items ${tgt} ${prop})
  if(_items)
    _asflow_sd_rewrite(_items ${cond})
    set_property(TARGET ${tgt} PROPERTY ${prop} "${_items}")
  endif()
endmacro()

# Rewrites the executables marked by asflow_static_executable() and the
# link interfaces of the project libraries they reach (see the top of this
# file). Call once, after every add_subdirectory().
function(asflow_static_deps_apply)
  get_property(exes GLOBAL PROPERTY ASFLOW_STATIC_EXECUTABLES)
  if(NOT exes)
    return()
  endif()
  add_library(asflow_static_deps INTERFACE)
  set(all_archives "")
  set(all_other "")
  set(static_items "")
  set(dynamic_items "")
  set(dynamic_libs "")
  set(queue "")
  foreach(exe ${exes})
    _asflow_sd_rewrite_property(${exe} LINK_LIBRARIES FALSE)
  endforeach()
  set(done "")
  while(queue)
    list(POP_FRONT queue lib)
    get_target_property(aliased ${lib} ALIASED_TARGET)
    if(aliased)
      set(lib ${aliased})
    endif()
    if(lib IN_LIST done)
      continue()
    endif()
    list(APPEND done ${lib})
    _asflow_sd_rewrite_property(${lib} INTERFACE_LINK_LIBRARIES TRUE)
  endwhile()

  list(REMOVE_DUPLICATES all_archives)
  list(REMOVE_DUPLICATES all_other)
  list(REMOVE_DUPLICATES static_items)
  list(REMOVE_DUPLICATES dynamic_items)
  list(REMOVE_DUPLICATES dynamic_libs)
  # Whatever is still linked dynamically must not bring a library in again.
  foreach(lib ${dynamic_libs})
    _asflow_sd_archive("${lib}" archive)
    if(archive AND archive IN_LIST all_archives)
      message(FATAL_ERROR "StaticDeps: ${lib} would be linked both statically and dynamically")
    endif()
  endforeach()
  # One group: the archives depend on each other in cycles (absl, gRPC).
  # The system libraries and flags the closures had follow it (glibc stays
  # dynamic).
  string(JOIN "," group ${all_archives})
  target_link_libraries(asflow_static_deps INTERFACE
    "$<LINK_GROUP:RESCAN,${group}>" ${all_other})

  # The check: the executable needs none of the libraries linked statically.
  set(names "")
  foreach(a ${all_archives})
    get_filename_component(n "${a}" NAME_WE)
    list(APPEND names "${n}")
  endforeach()
  file(WRITE "${CMAKE_BINARY_DIR}/asflow_static_deps.txt" "${names}\n")

  list(LENGTH all_archives n)
  string(REPLACE ";" " " e "${exes}")
  message(STATUS "ASFLOW_STATIC_CLIENT: ${e}: ${n} static archives")
  if(dynamic_items)
    string(REPLACE ";" " " d "${dynamic_items}")
    message(STATUS "ASFLOW_STATIC_CLIENT: still dynamic (no .a): ${d}")
  endif()
endfunction()
