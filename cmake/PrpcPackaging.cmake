# Debian packages of a build, made by CPack's DEB generator:
#   cmake --build build && (cd build && cpack -G DEB)
# One package per install component (see the install section of
# CMakeLists.txt; docs/building.md lists what each holds):
#   runtime  libpiperpc<soversion>  the shared library
#   dev      libpiperpc-dev         headers, static libraries, pkg-config,
#                                   the CMake package and prpc_generate()
#   tools    piperpc-tools          protoc-gen-prpc, prpc
# Depends on Debian's runtime packages (libgrpc29, libprotobuf-c1, ...) come
# from dpkg-shlibdeps (Debian: dpkg-dev).
include_guard(GLOBAL)

set(PRPC_DEB_MAINTAINER "piperpc maintainers <maintainers@piperpc.invalid>"
    CACHE STRING "Maintainer field of the Debian packages (cpack -G DEB)")
set(PRPC_DEB_RELEASE 1 CACHE STRING
    "Debian revision of the packages: VERSION-RELEASE")

set(CPACK_PACKAGE_NAME piperpc)
set(CPACK_PACKAGE_VENDOR piperpc)
set(CPACK_PACKAGE_VERSION ${PROJECT_VERSION})
# No CPACK_PACKAGE_DESCRIPTION_SUMMARY: CPackDeb would put it before each
# package's own description (below: a synopsis line, then the long text).
set(CPACK_PACKAGE_CONTACT "${PRPC_DEB_MAINTAINER}")
set(CPACK_GENERATOR DEB)
set(CPACK_STRIP_FILES ON)
set(CPACK_SOURCE_GENERATOR TGZ)
set(CPACK_SOURCE_IGNORE_FILES "/\\\\.git/" "/build[^/]*/" "\\\\.log$")

set(CPACK_DEB_COMPONENT_INSTALL ON)
set(CPACK_COMPONENTS_ALL runtime dev tools)
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_DEBIAN_PACKAGE_RELEASE ${PRPC_DEB_RELEASE})
set(CPACK_DEBIAN_PACKAGE_PRIORITY optional)
set(CPACK_DEBIAN_PACKAGE_CONTROL_STRICT_PERMISSION ON)
# A shlibs file for each shared library ("libpiperpc 0 libpiperpc0 (>= V)"):
# only the runtime package has one. CPack adds the ldconfig calls.
set(CPACK_DEBIAN_PACKAGE_GENERATE_SHLIBS ON)
set(CPACK_DEBIAN_PACKAGE_GENERATE_SHLIBS_POLICY ">=")
set(prpc_deb_version "${PROJECT_VERSION}-${PRPC_DEB_RELEASE}")
set(prpc_deb_lib libpiperpc${PROJECT_VERSION_MAJOR})

# What the library links besides gRPC core and protobuf-c.
get_target_property(prpc_deb_links piperpc_static LINK_LIBRARIES)
set(prpc_deb_jansson OFF)
set(prpc_deb_mhd OFF)
if("PkgConfig::PRPC_JANSSON" IN_LIST prpc_deb_links)
  set(prpc_deb_jansson ON)
endif()
if("PkgConfig::PRPC_MHD" IN_LIST prpc_deb_links)
  set(prpc_deb_mhd ON)
endif()

find_program(PRPC_DPKG_SHLIBDEPS dpkg-shlibdeps)
if(PRPC_DPKG_SHLIBDEPS)
  set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
  set(prpc_deb_shlibs "")
  set(prpc_deb_tool_shlibs "")
else()
  # Debian 12's names, for a machine without dpkg-dev.
  message(STATUS "dpkg-shlibdeps not found (apt-get install dpkg-dev): the "
                 "Debian packages get a fixed list of Depends")
  set(prpc_deb_shlibs "libc6, libgrpc29, libprotobuf-c1")
  set(prpc_deb_tool_shlibs "libc6, libprotobuf-c1")
  if(PRPC_BUILD_CLI)
    set(prpc_deb_tool_shlibs "${prpc_deb_shlibs}, libjansson4")
  endif()
  if(prpc_deb_jansson)
    string(APPEND prpc_deb_shlibs ", libjansson4")
  endif()
  if(prpc_deb_mhd)
    string(APPEND prpc_deb_shlibs ", libmicrohttpd12")
  endif()
endif()

# The shared library.
set(CPACK_DEBIAN_RUNTIME_PACKAGE_NAME ${prpc_deb_lib})
set(CPACK_DEBIAN_RUNTIME_PACKAGE_SECTION libs)
set(CPACK_DEBIAN_RUNTIME_PACKAGE_DEPENDS "${prpc_deb_shlibs}")
set(CPACK_DEBIAN_RUNTIME_DESCRIPTION
"typed gRPC services in C over local pipes - shared library
piperpc serves and calls gRPC services from C over unix sockets,
socketpairs and TCP, on gRPC core, with protobuf-c (or nanopb) messages.

This package holds the shared library.")

# Headers, the static libraries, pkg-config, the CMake package. Its
# exported targets name protoc-gen-prpc, hence piperpc-tools; piperpc.pc
# and piperpcConfig.cmake look for what the static library links.
set(prpc_deb_dev_depends "${prpc_deb_lib} (= ${prpc_deb_version})"
    "piperpc-tools (= ${prpc_deb_version})" libgrpc-dev libprotobuf-c-dev)
if(prpc_deb_jansson)
  list(APPEND prpc_deb_dev_depends libjansson-dev)
endif()
if(prpc_deb_mhd)
  list(APPEND prpc_deb_dev_depends libmicrohttpd-dev)
endif()
list(APPEND prpc_deb_dev_depends protobuf-compiler protobuf-c-compiler
     "pkgconf | pkg-config")
list(JOIN prpc_deb_dev_depends ", " prpc_deb_dev_depends)
set(CPACK_DEBIAN_DEV_PACKAGE_NAME libpiperpc-dev)
set(CPACK_DEBIAN_DEV_PACKAGE_SECTION libdevel)
set(CPACK_DEBIAN_DEV_PACKAGE_DEPENDS "${prpc_deb_dev_depends}")
set(CPACK_DEBIAN_DEV_PACKAGE_SUGGESTS "cmake, nanopb, libnanopb-dev")
set(CPACK_DEBIAN_DEV_DESCRIPTION
"typed gRPC services in C over local pipes - development files
piperpc serves and calls gRPC services from C over unix sockets,
socketpairs and TCP, on gRPC core, with protobuf-c (or nanopb) messages.

This package holds the headers, the static libraries, the pkg-config
file, the CMake package with prpc_generate(), and the protos of the
built-in health and reflection services.")

# The code generator and the command-line client.
set(CPACK_DEBIAN_TOOLS_PACKAGE_NAME piperpc-tools)
set(CPACK_DEBIAN_TOOLS_PACKAGE_SECTION devel)
set(CPACK_DEBIAN_TOOLS_PACKAGE_DEPENDS "${prpc_deb_tool_shlibs}")
set(CPACK_DEBIAN_TOOLS_PACKAGE_RECOMMENDS
    "protobuf-compiler, protobuf-c-compiler")
if(PRPC_BUILD_CLI)
  set(prpc_deb_tools "protoc-gen-prpc, the protoc plugin that generates\ntyped stubs, and prpc, a command-line client (JSON in and out,\ndescriptors from reflection or from protoc -o files).")
else()
  set(prpc_deb_tools "protoc-gen-prpc, the protoc plugin that generates\ntyped stubs.")
endif()
set(CPACK_DEBIAN_TOOLS_DESCRIPTION
"typed gRPC services in C over local pipes - tools
piperpc serves and calls gRPC services from C over unix sockets,
socketpairs and TCP, on gRPC core, with protobuf-c (or nanopb) messages.

This package holds ${prpc_deb_tools}")

include(CPack)
