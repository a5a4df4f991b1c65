/*
 * fault-backend - a backend that wraps a real fwx backend and fails the Nth call of a method.
 * SPDX-License-Identifier: MIT
 *
 * In the manner of SQLite's test VFS, which wraps the real VFS: every method of the registered
 * wrapper forwards to the wrapped backend (found with fwx_backend_find(), "proxy" for one), and
 * counts the call; when a fault is armed, the chosen call returns the chosen fwx_result instead,
 * without reaching the wrapped backend. It is built against the installed <fwx/...> headers only
 * (pkg-config fwx), which is what it proves: a backend can be written from outside libfwx.
 *
 * Methods the wrapped backend does not implement (NULL, or past its struct version) stay NULL
 * in the wrapper, so the core treats the pair exactly as it would treat the wrapped backend.
 * All calls are [loop-thread] (the loop of the firewalls that use the wrapper), except
 * fault_backend_register() and fault_backend_unregister(), which are [any-thread].
 */
#ifndef FAULT_BACKEND_H
#define FAULT_BACKEND_H

#include <fwx/fwx.h>

#ifdef __cplusplus
extern "C" {
#endif

/** The methods of ::fwx_backend, for counting and arming. */
typedef enum fault_method {
    FAULT_OPEN,
    FAULT_CLOSE, /* counted, never failed: it returns nothing */
    FAULT_GRANT_ADD,
    FAULT_GRANT_REMOVE,
    FAULT_LISTEN,
    FAULT_UNLISTEN,
    FAULT_RELAY,
    FAULT_KILL,
    FAULT_CREATE_SOCKET,
    FAULT_LIST,
    FAULT_POLICY_CHANGED,
    FAULT_GRANT_REMOVE_MANY,
    FAULT_WRAPPED, /* counted, never failed: the core's question "whom do you wrap?" */
    /** Any method that can fail (all but close and wrapped): arm the Nth call of any of them. */
    FAULT_ANY,
    FAULT__COUNT
} fault_method;

typedef struct fault_backend fault_backend;

/**
 * Registers a backend @p name that wraps the backend @p wrapped.
 * @param name the wrapper's name (copied), unique among registered backends.
 * @param wrapped the name of the backend to wrap (found now, with fwx_backend_find()).
 * @param out receives the wrapper, to arm and count with; NULL on failure.
 * @return FWX_S_OK; FWX_E_NOT_FOUND (no backend @p wrapped); FWX_E_OUTOFMEMORY; what
 *   fwx_backend_register() says (FWX_E_ALREADY_EXISTS_WIN32 for a taken name).
 */
fwx_result fault_backend_register(const char *name, const char *wrapped, fault_backend **out);

/**
 * Unregisters and frees the wrapper. Only once no firewall uses it any more (a firewall keeps
 * the backend it opened until it closes). NULL is a no-op. @return FWX_S_OK, or what
 * fwx_backend_unregister() says (the wrapper is freed all the same).
 */
fwx_result fault_backend_unregister(fault_backend *fb);

/** The registered backend struct (borrowed; valid until fault_backend_unregister()). */
const fwx_backend *fault_backend_vtable(const fault_backend *fb);

/**
 * Arms one fault: the @p nth call from now (1: the next) of method @p m (FAULT_ANY: of any
 * method that can fail) returns @p code without reaching the wrapped backend; with
 * @p persist, so does every later call of it until fault_backend_disarm(). Replaces a fault
 * armed before.
 * @return FWX_S_OK; FWX_E_INVALIDARG (@p nth 0, @p code not a failure, or a method that cannot
 *   fail: FAULT_CLOSE, FAULT_WRAPPED).
 */
fwx_result fault_backend_arm(fault_backend *fb, fault_method m, unsigned nth, fwx_result code, int persist);

/** Disarms the fault, if any. */
void fault_backend_disarm(fault_backend *fb);

/** Calls of @p m since registration (FAULT_ANY: of every method that can fail), faults included. */
unsigned fault_backend_calls(const fault_backend *fb, fault_method m);

/** Faults injected since registration. */
unsigned fault_backend_faults(const fault_backend *fb);

/** The method's name in struct fwx_backend ("grant_add"), "any", or "?". */
const char *fault_method_name(fault_method m);

#ifdef __cplusplus
}
#endif

#endif /* FAULT_BACKEND_H */
