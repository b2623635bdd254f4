/** The console's one stylesheet (served by the broker; the CSP allows no inline style). */
export const CONSOLE_CSS = `*,*::before,*::after{box-sizing:border-box}
body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;margin:0;background:#f6f7f9;color:#14171a;line-height:1.5}
a{color:#0b5cad}a:hover{color:#083f77}
.skip{position:absolute;left:-999px;top:0;background:#fff;padding:.5rem 1rem;z-index:10}.skip:focus{left:1rem}
.visually-hidden{position:absolute;width:1px;height:1px;overflow:hidden;clip:rect(0 0 0 0);white-space:nowrap}
header.top{background:#14171a;color:#fff}
header.top .bar{display:flex;flex-wrap:wrap;gap:1rem;align-items:center;padding:.75rem 1.5rem}
header.top a{color:#fff}
.brand{font-weight:700;font-size:1.125rem;text-decoration:none}
.region{background:#2e3440;border-radius:4px;padding:.1rem .5rem}
.who{margin-left:auto;display:flex;flex-wrap:wrap;gap:.75rem;align-items:center;font-size:.875rem}
.who code{color:#fff;background:#2e3440;padding:.1rem .3rem;border-radius:3px}
.who form{margin:0}
header.top nav ul{list-style:none;margin:0;padding:0 1.5rem;display:flex;flex-wrap:wrap;gap:.25rem}
header.top nav a{display:inline-block;padding:.5rem .75rem;text-decoration:none;border-bottom:3px solid transparent}
header.top nav a[aria-current="page"]{border-bottom-color:#f59e0b;font-weight:600}
main{max-width:72rem;margin:1.5rem auto;padding:1.5rem 2rem;background:#fff;border-radius:8px;box-shadow:0 1px 4px rgba(0,0,0,.12)}
main:focus{outline:none}
h1{font-size:1.6rem;margin-top:0}h2{font-size:1.2rem;margin-top:2rem}h3{font-size:1rem}
footer{max-width:72rem;margin:0 auto 2rem;padding:0 2rem;color:#4b5563;font-size:.875rem}
table{border-collapse:collapse;width:100%;margin:1rem 0;font-size:.9375rem}
caption{text-align:left;font-weight:600;padding:.25rem 0}
th,td{text-align:left;vertical-align:top;padding:.5rem;border-bottom:1px solid #d1d5db}
th{background:#f3f4f6}
td code,pre,textarea.code{font-family:ui-monospace,"SFMono-Regular",Menlo,Consolas,monospace;font-size:.875rem}
pre{background:#f3f4f6;padding:1rem;overflow:auto;border-radius:4px;max-height:32rem}
.field{margin:0 0 1rem;border:0;padding:0}
.field label,legend{display:block;font-weight:600;margin-bottom:.25rem}
.field.check,.check{display:flex;gap:.5rem;align-items:flex-start;margin:.25rem 0}
.field.check label,.check label{font-weight:400;margin:0}
.req{font-weight:400;color:#4b5563}
.hint{margin:0 0 .25rem;color:#4b5563;font-size:.875rem}
input[type=text],input[type=url],input[type=email],input[type=password],input[type=number],input[type=search],input[type=datetime-local],select,textarea{display:block;width:100%;max-width:44rem;padding:.5rem;font-size:1rem;border:1px solid #6b7280;border-radius:4px;background:#fff;color:#14171a}
textarea.code{max-width:none}
.field.invalid input,.field.invalid textarea,.field.invalid select{border:2px solid #b42318}
.field-error{color:#b42318;font-weight:600;margin:0 0 .25rem}
.error-summary{border:3px solid #b42318;padding:1rem 1.25rem;margin:0 0 1.5rem;border-radius:4px}
.error-summary h2{margin-top:0;font-size:1.1rem}.error-summary a{color:#b42318}
button,.button{display:inline-block;padding:.55rem 1rem;border:1px solid #0b5cad;border-radius:6px;background:#0b5cad;color:#fff;text-decoration:none;font-size:1rem;cursor:pointer}
button.secondary,.button.secondary{background:#fff;color:#0b5cad}
button.danger{background:#b42318;border-color:#b42318}
button.link{background:none;border:0;color:inherit;text-decoration:underline;padding:0;font-size:inherit}
.actions{display:flex;flex-wrap:wrap;gap:.75rem;align-items:center;margin:1rem 0}
.actions form{margin:0}
.notice{padding:.75rem 1rem;border-left:5px solid;margin:0 0 1.5rem;border-radius:2px}
.notice.success{background:#ecfdf3;border-color:#067647}.notice.info{background:#eff6ff;border-color:#0b5cad}
.notice.warning{background:#fff4e5;border-color:#b45309}.notice.error{background:#fef3f2;border-color:#b42318}
.status{display:inline-block;padding:.05rem .5rem;border-radius:999px;font-size:.875rem;font-weight:600;border:1px solid}
.status.ok{color:#067647;border-color:#067647;background:#ecfdf3}
.status.bad{color:#b42318;border-color:#b42318;background:#fef3f2}
.status.off{color:#4b5563;border-color:#4b5563;background:#f3f4f6}
dl.facts{display:grid;grid-template-columns:minmax(10rem,max-content) 1fr;gap:.25rem 1rem}
dl.facts div{display:contents}dl.facts dt{font-weight:600}dl.facts dd{margin:0;overflow-wrap:anywhere}
.cards{display:grid;grid-template-columns:repeat(auto-fill,minmax(14rem,1fr));gap:1rem;padding:0;list-style:none}
.cards li{border:1px solid #d1d5db;border-radius:6px;padding:1rem}
.diff-added{color:#067647}.diff-removed{color:#b42318}
.copy{font-family:ui-monospace,monospace;background:#f3f4f6;padding:.5rem;border-radius:4px;overflow-wrap:anywhere;display:block}
a:focus,button:focus,input:focus,select:focus,textarea:focus,summary:focus{outline:3px solid #f59e0b;outline-offset:2px}
ul.decision{margin:0;padding-left:1.1rem}ul.decision li{margin:0}
details{margin:.5rem 0}summary{cursor:pointer;font-weight:600}`;
