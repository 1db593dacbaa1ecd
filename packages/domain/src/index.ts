/**
 * @petcover/domain — pet enrollment. Built out by its own issue.
 */
export {};
