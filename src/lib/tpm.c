/* vigil: placeholder, being written. */
