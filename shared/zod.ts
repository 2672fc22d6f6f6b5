/**
 * zod for every schema in shared/: the functional "zod/mini" API, whose
 * schema objects carry no per-instance methods, which the classic "zod"
 * API's schemas do in every program (README Measured); do not import "zod"
 * itself.
 *
 * Unlike the classic API, zod/mini sets no locale, so its own messages (a
 * value of the wrong type, say) would read just "Invalid input". English,
 * set once here, keeps them worded as before, e.g. "Invalid input: expected
 * number, received string". All locales load with zod/mini anyway
 * (z.locales), so this costs no extra module.
 */
import * as z from "zod/mini";

z.config(z.locales.en());

export { z };
