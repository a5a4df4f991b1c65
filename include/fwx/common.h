/*
 * fwx - firewall extensibility for Linux
 * SPDX-License-Identifier: MIT
 */
/**
 * @file fwx/common.h
 * @brief Basic types shared by every fwx header: result codes, GUIDs, export macros.
 *
 * @page threading Thread tags
 * Every method in the fwx headers carries one of these tags:
 * - **[loop-thread]**: call only from the thread that runs the firewall's `uv_loop_t`.
 *   fwx is not thread-safe unless a method says otherwise (as in libuv).
 * - **[any-thread]**: safe from any thread (reference counting only).
 * - **[init-only]**: only while the object is being set up (FilterInit, plugin entry init).
 *
 * Handler-state tags, on the methods a filter implements, say in which state of its object
 * the core calls them (in the manner of CLAP's `[active]`/`[!active]`), so a filter knows what
 * it may rely on:
 * - **[state: loaded]**: after `create_filter`, before FilterInit returned (FilterInit itself).
 * - **[state: running]**: between a successful FilterInit and FilterShutdown: AttachToSession,
 *   IFWXSessionFilter::FirewallEventHandler, data-filter methods.
 * - **[state: attached]**: a session filter between AttachToSession and its Detach; after
 *   Detach the core calls nothing on it but Release.
 * - **[state: shutting-down]**: FilterShutdown: the core withdrew the plugin's grants before the
 *   call and detaches its session filters after it; no new session is offered.
 * - **[state: any]**: reference counting (QueryInterface, AddRef, Release), which the core may
 *   call in any state, up to the last Release.
 *
 * @page results Result codes
 * Every fallible call returns an ::fwx_result, a signed 32-bit code in the HRESULT layout:
 * negative means failure, 0 is `FWX_S_OK`, 1 is `FWX_S_FALSE` ("false, but not an error").
 * Where the ISA Server / TMG SDK documents a value (FWX_E_TERMINATING = 0xC0040001, ...) fwx
 * uses that value, so that logs read the same. Codes whose original value is unknown, and codes
 * fwx adds, live in the range 0xC0041000-0xC00410FF and are marked "fwx's own" below.
 * ::fwx_strerror() and ::fwx_err_name() describe any code.
 *
 * @page struct_sizes Struct sizes
 * A public struct that may grow carries `uint32_t struct_size` (first, except in
 * ::fwx_plugin_entry, where it follows `abi_version`). A struct only ever grows at its end, and
 * each struct's doc gives its *first size*: the bytes through its last field in the version
 * that introduced it (on LP64). One rule, applied by every call, says what a size means:
 * - **Input** (a struct the caller fills and fwx reads: ::fwx_firewall_options,
 *   ::fwx_session_params, ::fwx_connection_params, ::fwx_flow, ::fwx_socks_limits,
 *   ::fwx_redirect_app given to fwx_redirect_record_new(), ::fwx_local_redirect): the caller
 *   sets `struct_size` to the sizeof it was built with. fwx accepts any size from the first size
 *   to its own sizeof; the fields a smaller size does not cover take their defaults (each
 *   appended field's default is what 0 means).
 * - **Output** (a struct the caller provides and fwx fills: ::fwx_firewall_stats,
 *   ::fwx_redirect_app from fwx_redirect_record_original_app(), ::fwx_redirect_hop): the caller
 *   sets `struct_size` before the call; fwx writes the fields up to that size and never past it,
 *   and never changes `struct_size`. An older caller simply gets the fields it knows. A
 *   `struct_size` of 0 means the first size, so that a caller built against fwx 1.0 (which set
 *   the size itself) and zeroing the struct keeps working; any other size outside the range is
 *   refused.
 * - **Initialisers** (fwx_firewall_options_init(), fwx_socks_limits_init()) are macros that
 *   pass `sizeof` of the caller's struct, so they fill exactly the caller's version and set its
 *   `struct_size` to it.
 * - **Handed out** (a struct fwx fills and lends for a callback: ::fwx_object_info,
 *   ::fwx_log_record, ::fwx_grant, ::fwx_listen_spec, and the events a filter receives,
 *   whose field is `StructSize`; and the plugin's own ::fwx_plugin_entry, which the host
 *   reads): `struct_size` is the size of the side that made it. The reader reads a field only when `struct_size` covers it, and refuses a size
 *   below the first size.
 *
 * Any other size (below the first size, above fwx's own sizeof) fails the call with
 * `FWX_E_INVALIDARG` (`FWX_E_ABI_MISMATCH` for a plugin entry) and, where there is a firewall
 * to log to, one line that names the call, the struct and the sizes it takes; nothing is
 * written.
 * Rationale: a library newer than the program must neither read fields the program never set
 * nor write past the program's buffer; a program newer than the library must be told, not
 * have its new fields silently dropped.
 */
#ifndef FWX_COMMON_H
#define FWX_COMMON_H

#include <fwx/version.h>

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#ifdef __cplusplus
extern "C" {
#endif

/** Marks a function exported by libfwx. */
#if defined(__GNUC__)
#define FWX_API __attribute__((visibility("default")))
#else
#define FWX_API
#endif

/** Marks the one symbol a plugin exports. */
#define FWX_PLUGIN_EXPORT FWX_API

/** A 32-bit result code: negative fails, 0 is OK, 1 is "false but fine". */
typedef int32_t fwx_result;

/** True when @p r is a success code (`FWX_S_OK` or `FWX_S_FALSE`). */
#define FWX_SUCCEEDED(r) ((fwx_result)(r) >= 0)
/** True when @p r is a failure code. */
#define FWX_FAILED(r) ((fwx_result)(r) < 0)

/** Builds the code that HRESULT_FROM_WIN32(@p e) gives on Windows. */
#define FWX_FROM_WIN32(e) ((fwx_result)(0x80070000u | ((uint32_t)(e) & 0xFFFFu)))

/**
 * @brief Every result code: XX(name, value, message).
 *
 * One table generates the constants, ::fwx_strerror() and ::fwx_err_name() (libuv's
 * UV_ERRNO_MAP). Append only; never renumber a released code.
 */
#define FWX_RESULT_MAP(XX)                                                                        \
    XX(S_OK, 0x00000000, "success")                                                               \
    XX(S_FALSE, 0x00000001, "success, nothing to do")                                             \
    /* Generic COM codes, documented values. */                                                   \
    XX(E_NOTIMPL, 0x80004001, "not implemented")                                                  \
    XX(E_NOINTERFACE, 0x80004002, "interface not supported")                                      \
    XX(E_POINTER, 0x80004003, "invalid pointer")                                                  \
    XX(E_FAIL, 0x80004005, "unspecified failure")                                                 \
    XX(E_OUTOFMEMORY, 0x8007000E, "out of memory")                                                \
    XX(E_INVALIDARG, 0x80070057, "invalid argument")                                              \
    XX(E_CLASSNOTREG, 0x80040154, "no filter with that class id is loaded")                       \
    /* Win32 codes wrapped the way HRESULT_FROM_WIN32 does. */                                    \
    XX(E_DUP_NAME, 0x80070034, "a permission for that address and port already exists")          \
    XX(E_ALREADY_EXISTS_WIN32, 0x800700B7, "already exists")                                      \
    XX(E_NOT_FOUND, 0x80070490, "not found")                                                      \
    XX(E_WSAEINVAL, 0x80072726, "invalid request for this socket state")                          \
    XX(E_ADDRINUSE, 0x80072740, "address already in use")                                         \
    XX(E_ADDRNOTAVAIL, 0x80072741, "address is not valid for this computer")                      \
    XX(E_CONNREFUSED, 0x8007274D, "connection refused")                                           \
    /* ISA Server / TMG firewall codes, documented values (wspfwerr.h). */                        \
    XX(E_TERMINATING, 0xC0040001, "object is shutting down")                                      \
    XX(E_INVALID_ARG, 0xC0040002, "invalid argument to a firewall service call")                                             \
    XX(E_ALREADY_IN_BLOCKING_OP, 0xC0040003, "already in a blocking operation")                   \
    XX(E_NOT_IN_BLOCKING_OP, 0xC0040004, "not in a blocking operation")                           \
    XX(E_FILTER_NOT_REGISTERED, 0xC0040005, "filter is not registered")                           \
    XX(E_BUFFERFULL, 0xC0040007, "buffer is full")                                                \
    XX(E_ALREADY_EMULATED, 0xC0040009, "connection is already emulated")                          \
    XX(E_BAD_CONTEXT, 0xC004000A, "call is not valid outside the event that allows it")           \
    XX(E_NOT_SUPPORTED, 0xC004000B, "not supported")                                              \
    XX(E_NOT_AUTHENTICATED, 0xC004000C, "user is not authenticated")                              \
    XX(E_POLICY_RULES_DENIED, 0xC004000D, "policy rules deny the request")                        \
    XX(E_MIME_NEEDED, 0xC004000E, "mime type needed for the decision")                            \
    XX(E_NOT_EMULATED, 0xC0040010, "connection is not emulated")                                  \
    XX(E_IS_BUSY, 0xC0040011, "too many pending connections")                                     \
    XX(E_NETWORK_RULES_DENIED, 0xC0040012, "no network rule relates these networks")              \
    XX(E_ADDRESS_NOT_ALLOWED, 0xC004002E, "address is outside the set allowed for this session")  \
    XX(E_POLICY_CONNECTION_CLOSED, 0xC0040039, "policy closed the connection")                    \
    /* fwx's own codes: values chosen by fwx (the originals are unknown or did not exist). */     \
    XX(E_PROTOCOL_RULES_DENIED, 0xC0041001, "access rules deny this protocol")                    \
    XX(E_SITE_AND_CONTENT_RULES_DENIED, 0xC0041002, "access rules deny this destination")         \
    XX(E_QUOTA_EXCEEDED, 0xC0041003, "too many outstanding permissions or bound ports")           \
    XX(E_ABI_MISMATCH, 0xC0041004, "plugin was built for an incompatible fwx abi")                \
    XX(E_PLUGIN_LOAD, 0xC0041005, "plugin could not be loaded")                                   \
    XX(E_PLUGIN_INIT, 0xC0041006, "plugin initialisation failed")                                 \
    XX(E_CONFIG, 0xC0041007, "configuration is invalid")                                          \
    XX(E_NO_PORTS, 0xC0041008, "no free port range of the requested size")                        \
    XX(E_BACKEND, 0xC0041009, "backend failed")                                                   \
    XX(E_DENIED, 0xC004100A, "a filter denied the request")                                       \
    XX(E_REDIRECT_LOOP, 0xC004100B, "redirect refused: it would loop (the provider already redirected it, or it leads back)")

/**
 * The result codes, named FWX_<name>: `FWX_S_OK`, `FWX_E_TERMINATING`, ... The values and
 * their meanings are listed in ::FWX_RESULT_MAP.
 */
enum fwx_result_code {
#define FWX__RESULT_ENUM(name, value, msg) FWX_##name = (int32_t)(value),
    FWX_RESULT_MAP(FWX__RESULT_ENUM)
#undef FWX__RESULT_ENUM
};

/**
 * @brief A text description of a result code. [any-thread]
 * @return a static string; never NULL ("unknown result code" for codes not in the table).
 */
FWX_API const char *fwx_strerror(fwx_result r);

/**
 * @brief The symbolic name of a result code, such as "FWX_E_TERMINATING". [any-thread]
 * @return a static string; never NULL ("FWX_UNKNOWN" for codes not in the table).
 */
FWX_API const char *fwx_err_name(fwx_result r);

/**
 * @brief A 16-byte identifier: interface ids (IIDs), filter class ids, protocol GUIDs.
 *
 * The bytes are stored in the order the text form is written ("{00112233-4455-...}" is
 * bytes 00 11 22 33 44 55 ...) on every platform, and compared with memcmp.
 * Rationale: COM's struct GUID has integer fields whose byte order differs across
 * platforms; plain bytes cannot.
 */
typedef struct fwx_guid {
    /** The 16 bytes, in the order of the text form. */
    uint8_t bytes[16];
} fwx_guid;

/** Builds a ::fwx_guid initializer from the 16 bytes of its text form. */
#define FWX_GUID_INIT(a, b, c, d, e, f, g, h, i, j, k, l, m, n, o, p)                               \
    {                                                                                             \
        { a, b, c, d, e, f, g, h, i, j, k, l, m, n, o, p }                                        \
    }

/** True when two GUIDs are equal. [any-thread] */
static inline int fwx_guid_equal(const fwx_guid *a, const fwx_guid *b)
{
    return memcmp(a->bytes, b->bytes, sizeof a->bytes) == 0;
}

/** The all-zero GUID, used where a protocol is unknown (GUID_NULL). */
static const fwx_guid FWX_GUID_NULL = FWX_GUID_INIT(0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0);

/** Buffer size for ::fwx_guid_format, including the terminating NUL. */
#define FWX_GUID_STRLEN 39

/**
 * @brief Writes @p g as "{xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx}", lower-case hex. [any-thread]
 * @param g the GUID (borrowed).
 * @param out a buffer of at least ::FWX_GUID_STRLEN bytes (borrowed).
 * @return @p out.
 */
FWX_API char *fwx_guid_format(const fwx_guid *g, char out[FWX_GUID_STRLEN]);

/**
 * @brief Parses a GUID in the form ::fwx_guid_format writes, braces optional. [any-thread]
 * Strict: exactly 32 hex digits (either case) grouped 8-4-4-4-12, braces both present or
 * both absent, nothing before or after.
 * @param text the text (borrowed).
 * @param out receives the GUID; left unchanged on failure.
 * @return `FWX_S_OK`, or `FWX_E_INVALIDARG` if @p text is not exactly one GUID (or is NULL).
 */
FWX_API fwx_result fwx_guid_parse(const char *text, fwx_guid *out);

/**
 * @brief The version of the library running, as ::FWX_VERSION_HEX is of the headers. [any-thread]
 * A program can refuse to run with a library older than what it needs:
 * `if (fwx_version() < FWX_VERSION_HEX) ...` (see @ref versions).
 * @return `(MAJOR << 16) | (MINOR << 8) | PATCH`.
 * @since 1.1
 */
FWX_API unsigned fwx_version(void);

/**
 * @brief The version of the library running, as text ("1.1.0"). [any-thread]
 * @return a static string; never NULL.
 * @since 1.1
 */
FWX_API const char *fwx_version_string(void);

#ifdef __cplusplus
}
#endif

#endif /* FWX_COMMON_H */
