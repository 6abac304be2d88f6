import { defineConfig } from "vite"

// Node 20 has no `using` declarations yet: esbuild lowers them when it targets Node 20. Bun and
// newer Node versions run them as written.
export default defineConfig({ esbuild: { target: "node20" } })
