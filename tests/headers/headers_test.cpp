/*
 * fwx tests - the same header checks compiled as C++: the public headers must be valid C++
 * (extern "C", no C-only constructs) for filters written in C++.
 * SPDX-License-Identifier: MIT
 */
#include "headers_test.c"
