/* vigil-verifier: one piece of evidence judged, with no I/O: the quote (signature, nonce, PCR
 * digest, clock, PCR 16 binding, tpm_policy) and the IMA list against the runtime policy. The
 * poller, /verify/identity and /verify/evidence all call vg_cv_evaluate(). */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "encoding.h"
#include "verifier.h"

static const char *quote_event_id(enum vg_quote_status st)
{
        switch (st) {
        case VG_QUOTE_MALFORMED:
                return "quote_validation.malformed_quote";
        case VG_QUOTE_SIG_ALG_REFUSED:
        case VG_QUOTE_KEY_MISMATCH:
        case VG_QUOTE_BAD_SIGNATURE:
                return "quote_validation.invalid_signature";
        case VG_QUOTE_HASH_ALG_MISMATCH:
                return "quote_validation.invalid_hash_alg";
        case VG_QUOTE_NONCE_MISMATCH:
                return "quote_validation.invalid_nonce";
        case VG_QUOTE_SELECTION_MISMATCH:
        case VG_QUOTE_PCR_DIGEST_MISMATCH:
                return "quote_validation.invalid_pcr_digest";
        case VG_QUOTE_CLOCK_UNSAFE:
        case VG_QUOTE_RESET_DECREASED:
        case VG_QUOTE_RESTART_DECREASED:
        case VG_QUOTE_CLOCK_STALLED:
                return "quote_validation.invalid_clock";
        case VG_QUOTE_PCR_MISSING:
                return "pcr_validation.missing_pcr";
        case VG_QUOTE_PCR16_MISMATCH:
                return "pcr_validation.invalid_pcr_16";
        case VG_QUOTE_POLICY_MISMATCH:
                return "pcr_validation.invalid_pcr";
        default:
                return "quote_validation.invalid_quote";
        }
}

static const char *ima_event_id(enum vg_ima_failure_kind k)
{
        switch (k) {
        case VG_IMA_FAIL_PARSE:
                return "ima.parse_error";
        case VG_IMA_FAIL_PCR:
                return "ima.invalid_pcr";
        case VG_IMA_FAIL_TEMPLATE_HASH:
                return "ima.template_hash_mismatch";
        case VG_IMA_FAIL_NOT_IN_POLICY:
                return "ima.file_not_found";
        case VG_IMA_FAIL_HASH:
                return "ima.hash_not_allowed";
        case VG_IMA_FAIL_SIGNATURE:
                return "ima.invalid_signature";
        case VG_IMA_FAIL_KEYRING:
                return "ima.keyring_not_allowed";
        case VG_IMA_FAIL_VIOLATION:
                return "ima.tomtou_violation";
        case VG_IMA_FAIL_BOOT_AGGREGATE:
                return "ima.boot_aggregate_mismatch";
        case VG_IMA_FAIL_PCR_MISMATCH:
                return "ima.pcr_mismatch";
        case VG_IMA_FAIL_ENTRY_NUMBER:
                return "ima.invalid_entry_number";
        }
        return "ima.error";
}

static void on_ima_failure(const struct vg_ima_failure *fl, void *userdata)
{
        struct vg_cv_failure *f = userdata;
        /* A malformed list or a wrong entry number means the evidence cannot be walked. */
        bool recoverable = fl->kind != VG_IMA_FAIL_ENTRY_NUMBER;

        vg_cv_failure_add(f, ima_event_id(fl->kind), false, recoverable, fl->path, fl->expected,
                          fl->found, fl->entry, "%s",
                          fl->message ? fl->message : vg_ima_failure_kind_str(fl->kind));
}

static bool clock_moved(const struct vg_clock_info *prev, const struct vg_clock_info *cur)
{
        if (cur->reset_count > prev->reset_count)
                return true;
        return cur->reset_count == prev->reset_count && cur->restart_count > prev->restart_count;
}

int vg_cv_evaluate(const struct vg_cv_evidence *ev, struct vg_cv_verdict *out,
                   struct vg_cv_failure *f)
{
        _cleanup_quote_ struct vg_quote *q = NULL;
        struct vg_error err = { 0 };
        enum vg_quote_status st;
        const uint8_t *pcr10;
        int r;

        memset(out, 0, sizeof(*out));
        if (!ev->quote || !ev->nonce || !ev->ak)
                return -EINVAL;

        r = vg_quote_parse(ev->quote, strlen(ev->quote), &q, &err);
        if (r < 0) {
                vg_cv_failure_add(f, "quote_validation.malformed_quote", true, true, NULL, NULL,
                                  NULL, UINT64_MAX, "the quote cannot be parsed: %s",
                                  vg_error_str(&err));
                return 0;
        }
        struct vg_quote_expect exp = {
                .nonce = (const uint8_t *)ev->nonce,
                .nonce_len = strlen(ev->nonce),
                .hash_alg = ev->hash_alg,
        };
        /* CVE-2023-3674: a signature that does not verify fails, whatever else is right. */
        if (vg_quote_verify(q, ev->ak, &exp, &st, &err) < 0) {
                vg_cv_failure_add(f, quote_event_id(st), true, true, NULL, NULL, NULL, UINT64_MAX,
                                  "quote refused (%s): %s", vg_quote_status_str(st),
                                  vg_error_str(&err));
                return 0;
        }
        out->clock = q->attest.clock_info;
        out->reboot = ev->prev_clock && clock_moved(ev->prev_clock, &out->clock);
        /* After a reboot only the counters' direction is checked: the clock may have been
         * saved a little before the power went. */
        if (vg_quote_check_clock(out->reboot ? NULL : ev->prev_clock, &out->clock, &st, &err) < 0) {
                if (!(out->reboot && st == VG_QUOTE_CLOCK_UNSAFE)) {
                        vg_cv_failure_add(f, quote_event_id(st), true, true, NULL, NULL, NULL,
                                          UINT64_MAX, "quote refused (%s): %s",
                                          vg_quote_status_str(st), vg_error_str(&err));
                        return 0;
                }
        }
        if (ev->nk_pem && vg_quote_check_pcr16(&q->pcrs, ev->hash_alg, ev->nk_pem,
                                               strlen(ev->nk_pem), &st, &err) < 0) {
                vg_cv_failure_add(f, quote_event_id(st), true, true, "PCR 16", NULL, NULL,
                                  UINT64_MAX, "the quote is not bound to the agent's key: %s",
                                  vg_error_str(&err));
                return 0;
        }
        /* Baselines: the values of an authentic quote, before any policy judges them. */
        if (ev->pcrs_out)
                out->pcrs_saved = vg_measurements_from_pcrs(ev->pcrs_out, &q->pcrs) == 0;
        if (ev->tpm_policy &&
            vg_tpm_policy_check(ev->tpm_policy, &q->pcrs, ev->hash_alg, &st, &err) < 0) {
                vg_cv_failure_add(f, quote_event_id(st), false, true, NULL, NULL, NULL, UINT64_MAX,
                                  "tpm_policy not satisfied: %s", vg_error_str(&err));
                return 0;
        }
        out->quote_ok = true;

        if (!ev->ima_requested) {
                out->ima_ok = true;
                return 0;
        }
        pcr10 = vg_pcr_value(&q->pcrs, ev->hash_alg, VG_PCR_IMA);
        if (!pcr10) {
                vg_cv_failure_add(f, "pcr_validation.missing_pcr", true, true, "PCR 10", NULL, NULL,
                                  UINT64_MAX,
                                  "PCR 10 was asked for but the quote does not include it");
                out->quote_ok = false;
                return 0;
        }
        if (!ev->ima_list) {
                vg_cv_failure_add(f, "ima.missing_list", false, true, NULL, NULL, NULL, UINT64_MAX,
                                  "the agent sent no IMA measurement list");
                return 0;
        }
        if (!ev->ima_state)
                return -EINVAL;
        if (out->reboot) {
                /* A new boot: a new list, PCR 10 from zero. The entries sent were asked for
                 * from the old boot's position, so they are checked from the next quote on. */
                vg_ima_state_reset(ev->ima_state);
                if (ev->ima_first_entry != 0) {
                        out->ima_skipped = true;
                        out->ima_ok = true;
                        return 0;
                }
        }
        size_t before = f->n;
        struct vg_ima_options io = {
                .fail_on_violations = ev->fail_on_violations,
                .on_failure = on_ima_failure,
                .userdata = f,
        };
        r = vg_ima_verify(ev->ima_policy, ev->ima_state, ev->ima_list, ev->ima_list_len,
                          ev->ima_first_entry, pcr10, &io, &out->ima, &err);
        if (r < 0) {
                vg_cv_failure_add(f, "ima.error", false, true, NULL, NULL, NULL, UINT64_MAX,
                                  "the IMA list could not be verified: %s", vg_error_str(&err));
                return 0;
        }
        f->ima_checked = true;
        f->ima_counts = out->ima.counts;
        out->ima_pcr_matched = out->ima.pcr_matched;
        out->ima_ok = f->n == before;
        return 0;
}
