/* vigil tests: placeholder, being written. */
