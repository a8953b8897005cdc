/** The import boundaries (eslint.boundaries.mjs), typed for the test that checks they bite. */
export declare const boundaries: object[];
