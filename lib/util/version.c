/*
 * fwx - the library's version at run time (include/fwx/version.h has the headers').
 * SPDX-License-Identifier: MIT
 */
#include "util/util.h"

unsigned fwx_version(void) { return FWX_VERSION_HEX; }

const char *fwx_version_string(void) { return FWX_VERSION_STRING; }
