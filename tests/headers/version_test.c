/*
 * fwx tests - one version: the library's fwx_version() and fwx_version_string() say what the
 * headers' FWX_VERSION_* macros say, and both say meson's project version (FWX_EXPECT_VERSION).
 * The SONAME and the file name are check-soname.sh's.
 * SPDX-License-Identifier: MIT
 */
#include <fwx/fwx.h>

/* The checks below are assert()s: keep them on whatever the build's NDEBUG. */
#undef NDEBUG
#include <assert.h>
#include <stdio.h>
#include <string.h>

static int failures;

/* Every check runs and says what disagreed; then one assert() fails the test if any did. */
#define VERSION_ASSERT(cond, ...)                                                                  \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            printf("assertion failed: %s: ", #cond);                                               \
            printf(__VA_ARGS__);                                                                   \
            printf("\n");                                                                          \
            failures++;                                                                            \
        }                                                                                          \
    } while (0)

int main(void)
{
    char v[32];
    snprintf(v, sizeof v, "%u.%u.%u", fwx_version() >> 16, (fwx_version() >> 8) & 0xFFu, fwx_version() & 0xFFu);
    printf("headers %s (0x%06x), library %s (0x%06x, %s), meson %s\n", FWX_VERSION_STRING, (unsigned)FWX_VERSION_HEX,
           fwx_version_string(), fwx_version(), v, FWX_EXPECT_VERSION);
    VERSION_ASSERT(fwx_version() == (unsigned)FWX_VERSION_HEX, "fwx_version() 0x%06x is not FWX_VERSION_HEX 0x%06x",
                   fwx_version(), (unsigned)FWX_VERSION_HEX);
    VERSION_ASSERT(strcmp(fwx_version_string(), FWX_VERSION_STRING) == 0 && strcmp(fwx_version_string(), v) == 0,
                   "fwx_version_string() \"%s\" disagrees with the headers or with fwx_version()", fwx_version_string());
    VERSION_ASSERT(strcmp(FWX_VERSION_STRING, FWX_EXPECT_VERSION) == 0, "the headers say %s, meson says %s",
                   FWX_VERSION_STRING, FWX_EXPECT_VERSION);
    VERSION_ASSERT(FWX_ABI_VERSION == (((uint32_t)FWX_VERSION_MAJOR << 16) | FWX_VERSION_MINOR),
                   "FWX_ABI_VERSION 0x%08x is not the version's major.minor", (unsigned)FWX_ABI_VERSION);
    VERSION_ASSERT(strcmp(fwx_log_level_name(FWX_LOG_WARN), "warn") == 0, "fwx_log_level_name(WARN) is \"%s\"",
                   fwx_log_level_name(FWX_LOG_WARN));
    VERSION_ASSERT(strcmp(fwx_log_level_name((fwx_log_level)9), "info") == 0,
                   "fwx_log_level_name(9) is \"%s\", expected the documented fallback \"info\"",
                   fwx_log_level_name((fwx_log_level)9));
    assert(failures == 0);
    return 0;
}
