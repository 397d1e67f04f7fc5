import { defineConfig } from "vite";
import { svelte } from "@sveltejs/vite-plugin-svelte";

// One origin with the gateway: `npm run build` writes dist/, which the gateway serves at /.
export default defineConfig({
  plugins: [svelte()],
  build: {
    outDir: "dist",
    emptyOutDir: true,
    // no inline <script>/<style>: the gateway's CSP allows only files of its own origin
    assetsInlineLimit: 0,
    modulePreload: { polyfill: false },
    sourcemap: false,
    // quiet builds: no timing report of the bundler's plugins
    rolldownOptions: { checks: { pluginTimings: false } },
  },
});
