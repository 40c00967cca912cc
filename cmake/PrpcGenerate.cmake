# prpc_generate(<target> PROTOS <file.proto>... [IMPORT_DIRS <dir>...]
#               [BACKEND protobuf-c|nanopb] [OUT_DIR <dir>])
#
# Runs protoc with protoc-c and protoc-gen-prpc on each .proto file and
# builds the generated <name>.pb-c.c and <name>.prpc.c into a static library
# <target> that links piperpc. Link your program to <target> and include
# "<name>.prpc.h". Each .proto is named relative to the first IMPORT_DIRS
# entry that holds it (default: its own directory), as protoc requires.
#
# BACKEND nanopb uses nanopb's protoc-gen-nanopb instead of protoc-c: it
# builds <name>.pb.c and <name>.prpc.c and links piperpc_nanopb (the codec)
# and nanopb's runtime (Debian: nanopb, libnanopb-dev). nanopb's <name>.options
# files are read from the .proto's directory and the IMPORT_DIRS.
#
# Well-known types: a .proto that imports google/protobuf/<name>.proto
# (empty, timestamp, duration, struct, any, wrappers, ...) gets the messages
# of those files generated into <target> too, once per target, from the
# IMPORT_DIRS when one holds them, else from protobuf's include directory
# (found next to protoc; Debian: libprotobuf-dev), so that
# #include "google/protobuf/empty.pb-c.h" resolves with nothing more to add.
# The imports are read when CMake configures; editing a .proto reconfigures.
# With nanopb, google/protobuf/<name>.options in an IMPORT_DIRS entry sets
# their sizes (Any's type_url and value are callbacks without one).
include_guard(GLOBAL)

find_program(PRPC_PROTOC protoc REQUIRED)
find_program(PRPC_PROTOC_GEN_C protoc-gen-c REQUIRED)
# protoc finds the well-known .proto files in ../include next to itself;
# their messages must be generated from the same place.
get_filename_component(_prpc_protoc_dir ${PRPC_PROTOC} DIRECTORY)
find_path(PRPC_PROTOBUF_INCLUDE_DIR google/protobuf/empty.proto
  HINTS ${_prpc_protoc_dir}/../include)

# Appends to the list <out> the google/protobuf/*.proto files that the file
# <path> imports.
function(_prpc_wkt_imports path out)
  file(STRINGS ${path} lines REGEX
       "^[ \t]*import[ \t]+(public[ \t]+|weak[ \t]+)?\"google/protobuf/")
  set(found ${${out}})
  foreach(line IN LISTS lines)
    if(line MATCHES "\"(google/protobuf/[A-Za-z0-9_]+\\.proto)\"")
      list(APPEND found ${CMAKE_MATCH_1})
    endif()
  endforeach()
  set(${out} ${found} PARENT_SCOPE)
endfunction()

function(prpc_generate target)
  cmake_parse_arguments(PARSE_ARGV 1 arg "" "BACKEND;OUT_DIR"
                        "PROTOS;IMPORT_DIRS")
  if(NOT arg_PROTOS)
    message(FATAL_ERROR "prpc_generate(${target}): no PROTOS given")
  endif()
  if(NOT arg_BACKEND)
    set(arg_BACKEND protobuf-c)
  endif()
  if(arg_BACKEND STREQUAL "nanopb")
    find_program(PRPC_PROTOC_GEN_NANOPB protoc-gen-nanopb)
    if(NOT TARGET nanopb::protobuf-nanopb-static)
      find_package(nanopb CONFIG QUIET)
    endif()
    if(NOT PRPC_PROTOC_GEN_NANOPB OR NOT TARGET nanopb::protobuf-nanopb-static)
      message(FATAL_ERROR "prpc_generate(${target}): BACKEND nanopb needs "
                          "protoc-gen-nanopb and nanopb's CMake package "
                          "(Debian: apt-get install nanopb libnanopb-dev)")
    endif()
    if(TARGET piperpc_nanopb)
      set(codec_lib piperpc_nanopb)
    elseif(TARGET piperpc::piperpc_nanopb)
      set(codec_lib piperpc::piperpc_nanopb)
    else()
      message(FATAL_ERROR "prpc_generate(${target}): this piperpc was built "
                          "without the nanopb backend")
    endif()
  elseif(NOT arg_BACKEND STREQUAL "protobuf-c")
    message(FATAL_ERROR "prpc_generate(${target}): unknown BACKEND "
                        "'${arg_BACKEND}' (supported: protobuf-c, nanopb)")
  endif()
  if(NOT arg_OUT_DIR)
    set(arg_OUT_DIR ${CMAKE_CURRENT_BINARY_DIR}/${target}_gen)
  endif()

  # The well-known types the PROTOS import, and where to find them: the
  # first IMPORT_DIRS entry that holds one, else protobuf's own.
  set(wkts)
  set(protos_abs)
  foreach(proto IN LISTS arg_PROTOS)
    get_filename_component(abs ${proto} ABSOLUTE)
    list(APPEND protos_abs ${abs})
    if(EXISTS ${abs}) # not one generated at build time
      _prpc_wkt_imports(${abs} wkts)
      set_property(DIRECTORY APPEND PROPERTY CMAKE_CONFIGURE_DEPENDS ${abs})
    endif()
  endforeach()
  set(wkt_files)
  while(wkts)
    list(POP_FRONT wkts rel)
    set(file)
    foreach(dir IN LISTS arg_IMPORT_DIRS PRPC_PROTOBUF_INCLUDE_DIR)
      get_filename_component(d ${dir} ABSOLUTE)
      if(EXISTS ${d}/${rel})
        set(file ${d}/${rel})
        break()
      endif()
    endforeach()
    if(NOT file)
      message(FATAL_ERROR "prpc_generate(${target}): ${rel} is imported but "
                          "not found in IMPORT_DIRS nor next to protoc "
                          "(Debian: apt-get install libprotobuf-dev)")
    endif()
    if(NOT file IN_LIST wkt_files AND NOT file IN_LIST protos_abs)
      list(APPEND wkt_files ${file})
      _prpc_wkt_imports(${file} wkts) # type.proto imports any.proto, ...
    endif()
  endwhile()

  set(srcs)
  set(incs)
  foreach(abs IN LISTS protos_abs wkt_files)
    set(root)
    set(wkt 0)
    if(abs IN_LIST wkt_files)
      set(wkt 1) # its messages only: it has no services
      string(REGEX REPLACE "/google/protobuf/[^/]+$" "" root ${abs})
    endif()
    foreach(dir IN LISTS arg_IMPORT_DIRS)
      if(root)
        break()
      endif()
      get_filename_component(d ${dir} ABSOLUTE)
      string(FIND "${abs}" "${d}/" at)
      if(at EQUAL 0)
        set(root ${d})
        break()
      endif()
    endforeach()
    if(NOT root)
      get_filename_component(root ${abs} DIRECTORY)
    endif()
    file(RELATIVE_PATH rel ${root} ${abs})
    string(REGEX REPLACE "\\.proto$" "" base ${rel})
    set(iflags -I${root})
    foreach(dir IN LISTS arg_IMPORT_DIRS)
      get_filename_component(d ${dir} ABSOLUTE)
      list(APPEND iflags -I${d})
    endforeach()
    if(wkt_files AND PRPC_PROTOBUF_INCLUDE_DIR)
      list(APPEND iflags -I${PRPC_PROTOBUF_INCLUDE_DIR})
    endif()
    list(REMOVE_DUPLICATES iflags)
    if(arg_BACKEND STREQUAL "nanopb")
      set(pb ${arg_OUT_DIR}/${base}.pb)
      # protoc-gen-nanopb looks for <name>.options along its own -I list.
      list(JOIN iflags " " nanopb_opts)
      set(msg_gen --plugin=protoc-gen-nanopb=${PRPC_PROTOC_GEN_NANOPB}
                  "--nanopb_out=${nanopb_opts}:${arg_OUT_DIR}")
      string(REGEX REPLACE "\\.proto$" ".options" options ${abs})
      set(deps ${abs})
      if(EXISTS ${options})
        list(APPEND deps ${options})
      endif()
      foreach(dir IN LISTS arg_IMPORT_DIRS)
        get_filename_component(d ${dir} ABSOLUTE)
        if(EXISTS ${d}/${base}.options)
          list(APPEND deps ${d}/${base}.options)
        endif()
      endforeach()
    else()
      set(pb ${arg_OUT_DIR}/${base}.pb-c)
      set(msg_gen --plugin=protoc-gen-c=${PRPC_PROTOC_GEN_C}
                  --c_out=${arg_OUT_DIR})
      set(deps ${abs})
    endif()
    if(wkt)
      add_custom_command(
        OUTPUT ${pb}.c ${pb}.h
        COMMAND ${CMAKE_COMMAND} -E make_directory ${arg_OUT_DIR}
        COMMAND ${PRPC_PROTOC} ${iflags} ${msg_gen} ${abs}
        DEPENDS ${deps}
        COMMENT "prpc_generate: ${rel}"
        VERBATIM)
      list(APPEND srcs ${pb}.c)
      continue()
    endif()
    set(outs ${pb}.c ${pb}.h
             ${arg_OUT_DIR}/${base}.prpc.c ${arg_OUT_DIR}/${base}.prpc.h)
    add_custom_command(
      OUTPUT ${outs}
      COMMAND ${CMAKE_COMMAND} -E make_directory ${arg_OUT_DIR}
      COMMAND ${PRPC_PROTOC} ${iflags} ${msg_gen}
              --plugin=protoc-gen-prpc=$<TARGET_FILE:piperpc::protoc-gen-prpc>
              --prpc_out=backend=${arg_BACKEND}:${arg_OUT_DIR}
              ${abs}
      DEPENDS ${deps} piperpc::protoc-gen-prpc
      COMMENT "prpc_generate: ${rel}"
      VERBATIM)
    list(APPEND srcs ${pb}.c ${arg_OUT_DIR}/${base}.prpc.c)
  endforeach()

  add_library(${target} STATIC ${srcs})
  target_include_directories(${target} PUBLIC ${arg_OUT_DIR})
  if(TARGET piperpc)
    target_link_libraries(${target} PUBLIC piperpc)
  else()
    target_link_libraries(${target} PUBLIC piperpc::piperpc)
  endif()
  if(arg_BACKEND STREQUAL "nanopb")
    target_link_libraries(${target} PUBLIC ${codec_lib}
                          nanopb::protobuf-nanopb-static)
  endif()
  set_target_properties(${target} PROPERTIES POSITION_INDEPENDENT_CODE ON)
endfunction()
