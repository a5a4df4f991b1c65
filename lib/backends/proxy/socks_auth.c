/*
 * fwx - SOCKS5 username/password authentication (RFC 1929) for the proxy backend's SOCKS
 * listeners, so that the policy's `users` rules mean something for explicit
 * clients: the name a client authenticated with becomes its session's user.
 *
 * The credentials file has one `user:hash` per line (`#` starts a comment), the hash a crypt(3)
 * string such as `openssl passwd -6` or `mkpasswd` writes ($6$, $5$, $y$, $2b$...). Plain-text
 * passwords are refused: the file would be a list of working passwords. The file must be a
 * regular file that others cannot read or write; errors name file:line.
 * Rationale for hashing on the loop thread: a $6$ hash with the default rounds costs a few
 * milliseconds, once per SOCKS connection; a client that fails is disconnected, so a guesser
 * pays a TCP handshake and a negotiation per try.
 * SPDX-License-Identifier: MIT
 */
#include "backends/proxy/proxy_impl.h"

#include <crypt.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define USERS_MAX 4096

struct fwx__socks_users {
    size_t n;
    struct {
        char *name;
        char *hash;
    } u[];
};

void fwx__socks_users_free(fwx__socks_users *t)
{
    if (t == NULL)
        return;
    for (size_t i = 0; i < t->n; i++) {
        free(t->u[i].name);
        free(t->u[i].hash);
    }
    free(t);
}

static bool name_ok(const char *s, size_t n)
{
    if (n == 0 || n > 255)
        return false;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] <= ' ' || s[i] == ':' || (unsigned char)s[i] >= 0x7f)
            return false;
    return true;
}

/* Loads and checks the file; NULL with err filled on any error. */
static fwx__socks_users *load(const char *path, char *err, size_t errlen)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
    struct stat sb;
    if (fd < 0) {
        snprintf(err, errlen, "%s: cannot open: %s", path, strerror(errno));
        return NULL;
    }
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        snprintf(err, errlen, "%s: not a regular file", path);
        close(fd);
        return NULL;
    }
    if (sb.st_mode & (S_IROTH | S_IWOTH)) {
        snprintf(err, errlen, "%s: readable or writable by others (mode %03o): chmod o-rwx it", path,
                 (unsigned)(sb.st_mode & 0777));
        close(fd);
        return NULL;
    }
    FILE *f = fdopen(fd, "r");
    if (f == NULL) {
        close(fd);
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        return NULL;
    }
    fwx__socks_users *t = calloc(1, sizeof *t + USERS_MAX * sizeof t->u[0]);
    char line[1024];
    int ln = 0;
    if (t == NULL) {
        snprintf(err, errlen, "%s: out of memory", path);
        goto fail;
    }
    while (fgets(line, sizeof line, f) != NULL) {
        ln++;
        size_t len = strlen(line);
        if (len == sizeof line - 1 && line[len - 1] != '\n') {
            snprintf(err, errlen, "%s:%d: line too long", path, ln);
            goto fail;
        }
        while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r'))
            line[--len] = '\0';
        if (len == 0 || line[0] == '#')
            continue;
        char *colon = strchr(line, ':');
        if (colon == NULL || !name_ok(line, (size_t)(colon - line))) {
            snprintf(err, errlen, "%s:%d: want user:hash (a name of 1-255 printable characters)", path, ln);
            goto fail;
        }
        const char *hash = colon + 1;
        if (hash[0] != '$' || strlen(hash) < 10 || strchr(hash, ':') != NULL) {
            snprintf(err, errlen, "%s:%d: the password must be a crypt(3) hash (openssl passwd -6), not plain text",
                     path, ln);
            goto fail;
        }
        *colon = '\0';
        for (size_t i = 0; i < t->n; i++)
            if (strcmp(t->u[i].name, line) == 0) {
                snprintf(err, errlen, "%s:%d: user \"%s\" appears twice", path, ln, line);
                goto fail;
            }
        if (t->n >= USERS_MAX) {
            snprintf(err, errlen, "%s:%d: more than %d users", path, ln, USERS_MAX);
            goto fail;
        }
        t->u[t->n].name = strdup(line);
        t->u[t->n].hash = strdup(hash);
        t->n++;
        if (t->u[t->n - 1].name == NULL || t->u[t->n - 1].hash == NULL) {
            snprintf(err, errlen, "%s: out of memory", path);
            goto fail;
        }
    }
    if (ferror(f)) {
        snprintf(err, errlen, "%s: read error", path);
        goto fail;
    }
    if (t->n == 0) {
        snprintf(err, errlen, "%s: no users", path);
        goto fail;
    }
    fclose(f);
    return t;
fail:
    fclose(f);
    fwx__socks_users_free(t);
    return NULL;
}

fwx_result fwx_proxy_socks_users_check(const char *path, char *err, size_t errlen)
{
    char e[512];
    if (path == NULL)
        return FWX_E_POINTER;
    fwx__socks_users *t = load(path, e, sizeof e);
    if (err != NULL && errlen > 0)
        snprintf(err, errlen, "%s", t ? "" : e);
    fwx__socks_users_free(t);
    return t ? FWX_S_OK : FWX_E_INVALIDARG;
}

fwx_result fwx_proxy_socks_set_users(fwx_firewall *fw, const char *path)
{
    pstate *st = fwx_firewall_backend_state_of(fw, &fwx__proxy_backend);
    if (st == NULL || st->magic != FWX__PROXY_MAGIC)
        return FWX_E_NOT_SUPPORTED;
    fwx__socks_users *t = NULL;
    if (path != NULL) {
        char e[512];
        if ((t = load(path, e, sizeof e)) == NULL) {
            fwx_firewall_log(fw, FWX_LOG_ERROR, "socks users %s", e);
            return FWX_E_INVALIDARG;
        }
    }
    fwx__socks_users_free(st->users);
    st->users = t;
    return FWX_S_OK;
}

bool fwx__socks_users_verify(const fwx__socks_users *t, const char *user, const char *password)
{
    const char *hash = NULL;
    for (size_t i = 0; i < t->n; i++)
        if (strcmp(t->u[i].name, user) == 0)
            hash = t->u[i].hash;
    /* An unknown user costs a hash as well, so timing does not tell which names exist. */
    struct crypt_data *cd = calloc(1, sizeof *cd);
    if (cd == NULL)
        return false;
    /* crypt_rn, not crypt_r: the sanitizers' crypt_r interceptor calls a NULL pointer when
       libcrypt reaches the process only through libfwx; crypt_rn also says NULL on failure. */
    const char *h = crypt_rn(password, hash ? hash : t->u[0].hash, cd, (int)sizeof *cd);
    bool ok = false;
    if (hash != NULL && h != NULL && h[0] == '$') {
        size_t n = strlen(hash);
        unsigned char diff = strlen(h) != n;
        for (size_t i = 0; i < n && h[i] != '\0'; i++)
            diff |= (unsigned char)(h[i] ^ hash[i]);
        ok = diff == 0;
    }
    explicit_bzero(cd, sizeof *cd);
    free(cd);
    return ok;
}
