/*
 * fwx tests - tftp_judge: reads datagrams captured on the wire (a file of records: 2-byte
 * big-endian length, then the datagram) and prints, one line each, what the TFTP filter's parser
 * (plugins/tftp/tftp_parse.c) makes of it:
 *   ok RRQ <filename> <mode> [name=value ...]
 *   refused <reason>
 * Used by real_clients.py to check that the requests real TFTP clients send pass the strict
 * parser unchanged. Exit 2 on a read error; an accepted request that breaks what the parser
 * promises (the opcode and filename are the datagram's own bytes) fails an assert().
 * SPDX-License-Identifier: MIT
 */
#include "tftp_parse.h"

/* The checks below are assert()s: keep them on whatever the build's NDEBUG. */
#undef NDEBUG
#include <assert.h>
#include <stdio.h>
#include <string.h>


int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: tftp_judge FILE\n");
        return 2;
    }
    FILE *f = fopen(argv[1], "rb");
    if (f == NULL) {
        perror(argv[1]);
        return 2;
    }
    uint8_t hdr[2], pkt[65536];
    while (fread(hdr, 1, 2, f) == 2) {
        size_t n = ((size_t)hdr[0] << 8) | hdr[1];
        if (fread(pkt, 1, n, f) != n) {
            fprintf(stderr, "truncated record\n");
            fclose(f);
            return 2;
        }
        tftp_request r;
        tftp_status st = tftp_parse_request(pkt, n, &r);
        if (st != TFTP_P_OK) {
            printf("refused %s\n", tftp_status_text(st));
            continue;
        }
        /* An accepted request is the datagram's own bytes: its opcode, then its filename and NUL. */
        size_t flen = strlen(r.filename);
        assert(r.opcode == tftp_opcode(pkt, n));
        assert(flen > 0 && 2 + flen < n && memcmp(pkt + 2, r.filename, flen + 1) == 0);
        printf("ok %s %s %s", r.opcode == TFTP_OP_RRQ ? "RRQ" : "WRQ", r.filename,
               r.mode == TFTP_MODE_OCTET ? "octet" : r.mode == TFTP_MODE_NETASCII ? "netascii" : "mail");
        for (unsigned i = 0; i < r.n_opts; i++)
            printf(" %s=%s", r.opts[i].name, r.opts[i].value);
        printf("\n");
    }
    fclose(f);
    return 0;
}
